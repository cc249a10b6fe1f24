//go:build !race

package monitor

// raceEnabled reports a build with the race detector, under which heap
// figures are not representative and big loops are slow.
const raceEnabled = false
