package main

import (
	"bytes"
	"crypto/rand"
	"encoding/base64"
	"encoding/json"
	"fmt"
	"io"
	"net"
	"net/http"
	"os"
	"os/exec"
	"path/filepath"
	"sort"
	"strconv"
	"strings"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"golang.org/x/crypto/ssh"
)

// The SSH benchmarks measure the gateway beside a direct connection to
// the same sshd in the same run; bench/ssh.sh turns them into ratios.

// benchFiles are what the bulk benchmark cats: "random" is base64 of
// random bytes (text the recorder cannot compress: its worst case),
// "logs" is application-log-like text (what people cat).
var benchFiles = map[string]string{}

// benchEnv is the sshd and vigil serve shared by BenchmarkSSH's parts.
type benchEnv struct {
	*gatewayFixture
	tok string
}

// logText returns about n bytes of application-log-like lines.
func logText(n int) []byte {
	levels := []string{"INFO ", "INFO ", "INFO ", "DEBUG", "WARN ", "ERROR"}
	paths := []string{"/api/v1/items", "/api/v1/users", "/healthz", "/api/v1/orders", "/login", "/static/app.js"}
	var b bytes.Buffer
	r := make([]byte, 8)
	t := time.Date(2026, 11, 24, 9, 0, 0, 0, time.UTC)
	for b.Len() < n {
		rand.Read(r)
		t = t.Add(time.Duration(r[0]) * time.Millisecond)
		fmt.Fprintf(&b, "%s %s api request method=GET path=%s/%d status=%d duration_ms=%d user=u%d trace=%x\n",
			t.Format(time.RFC3339Nano), levels[int(r[1])%len(levels)], paths[int(r[2])%len(paths)], int(r[3])<<8|int(r[4]),
			[]int{200, 200, 200, 201, 404, 500}[int(r[5])%6], r[6], int(r[7])*37, r[:4])
	}
	return b.Bytes()
}

// BenchmarkSSH measures the gateway beside a direct connection to the
// same sshd in the same run (bench/ssh.sh reports the ratios):
//
//	bulk/{logs,random}/{direct,vigil}  the real ssh client cats 256 MiB
//	keystroke/{direct,vigil}           one key typed into cat on a pty, echoed back
//	start/{direct,vigil}               connect, log in, run true, disconnect (concurrent)
//	idle-memory                        resident memory per idle interactive session
func BenchmarkSSH(b *testing.B) {
	if p := os.Getenv("VIGIL_BENCH_CPUPROFILE"); p != "" {
		os.Setenv("VIGIL_CPUPROFILE", p)
	}
	env := &benchEnv{gatewayFixture: newGatewayFixture(b, "ssh:\n  idle_timeout: 1h\n")}
	env.tok = env.token(b, "--grant", "web1:root:shell,exec", "--ttl", "8h")
	raw := make([]byte, 192<<20)
	rand.Read(raw)
	for kind, data := range map[string][]byte{"random": []byte(base64.StdEncoding.EncodeToString(raw)), "logs": logText(256 << 20)} {
		benchFiles[kind] = filepath.Join(b.TempDir(), "bench-"+kind)
		os.WriteFile(benchFiles[kind], data, 0o644)
	}
	for _, kind := range []string{"logs", "random"} {
		for _, via := range []bool{false, true} {
			b.Run("bulk/"+kind+"/"+legName(via), func(b *testing.B) { env.bulk(b, benchFiles[kind], via) })
		}
	}
	for _, via := range []bool{false, true} {
		b.Run("keystroke/"+legName(via), func(b *testing.B) { env.keystroke(b, via, 0) })
	}
	// The same through Vigil with every built-in rule pack on the target,
	// and with 50 admins watching the session.
	env.s.must("", "target", "rules", "web1", "os-sensitive,lateral-movement,credential-access,database")
	b.Run("keystroke/vigil-rules", func(b *testing.B) { env.keystroke(b, true, 0) })
	env.s.must("", "target", "rules", "web1")
	b.Run("keystroke/vigil-watched-50", func(b *testing.B) { env.keystroke(b, true, 50) })
	for _, via := range []bool{false, true} {
		b.Run("start/"+legName(via), func(b *testing.B) { env.start(b, via) })
	}
	b.Run("idle-memory", env.idleMemory)
	watchFile := filepath.Join(b.TempDir(), "bench-watch")
	os.WriteFile(watchFile, logText(32<<20), 0o644)
	for _, n := range []int{0, 50} {
		b.Run(fmt.Sprintf("watchers/%d", n), func(b *testing.B) { env.watched(b, watchFile, n) })
	}
}

// watched: a bulk exec session through Vigil with n admins watching it
// live from its start. Reports MB/s and how many watchers were cut off
// for falling behind (the session never waits for them).
func (f *benchEnv) watched(b *testing.B, file string, n int) {
	fi, _ := os.Stat(file)
	b.SetBytes(fi.Size())
	cutoff := 0
	for b.Loop() {
		b.StopTimer()
		seen := f.sessionIDs(b)
		cmd := f.s.sshCmd(f.tok, "ssh", "root@web1@127.0.0.1", "head -c1 >/dev/null; cat "+file)
		stdin, _ := cmd.StdinPipe()
		var got countWriter
		cmd.Stdout = &got
		if err := cmd.Start(); err != nil {
			b.Fatal(err)
		}
		done := f.watch(b, f.newSession(b, seen), n)
		b.StartTimer()
		stdin.Write([]byte{'\n'})
		stdin.Close()
		if err := cmd.Wait(); err != nil || int64(got) != fi.Size() {
			b.Fatalf("%v, %d bytes", err, got)
		}
		b.StopTimer()
		cutoff += done()
		b.StartTimer()
	}
	b.ReportMetric(float64(cutoff)/float64(b.N), "cut-off-watchers")
}

// sessionIDs returns the IDs of the sessions so far.
func (f *benchEnv) sessionIDs(b *testing.B) map[string]bool {
	var ls struct{ Sessions []struct{ ID string } }
	json.Unmarshal([]byte(f.s.must("", "sessions", "ls", "-o", "json")), &ls)
	seen := map[string]bool{}
	for _, s := range ls.Sessions {
		seen[s.ID] = true
	}
	return seen
}

// newSession waits for a live session not in seen and returns its ID.
func (f *benchEnv) newSession(b *testing.B, seen map[string]bool) string {
	for deadline := time.Now().Add(30 * time.Second); time.Now().Before(deadline); time.Sleep(20 * time.Millisecond) {
		var active struct{ Sessions []struct{ ID string } }
		json.Unmarshal([]byte(f.s.must("", "sessions", "ls", "--active", "-o", "json")), &active)
		for _, s := range active.Sessions {
			if !seen[s.ID] {
				return s.ID
			}
		}
	}
	b.Fatal("no new session")
	return ""
}

// watch attaches n live watchers to session id, reading and discarding
// like a remote admin's terminal. The returned func closes them and
// reports how many Vigil cut off for falling behind.
func (f *benchEnv) watch(b *testing.B, id string, n int) func() int {
	admin, _ := os.ReadFile(filepath.Join(f.s.data, adminTokenFile))
	var wg sync.WaitGroup
	var cut atomic.Int64
	var bodies []io.Closer
	for range n {
		req, _ := http.NewRequest("GET", "http://"+f.s.addr+"/api/v1/sessions/"+id+"/live", nil)
		req.Header.Set("Authorization", "Bearer "+strings.TrimSpace(string(admin)))
		resp, err := http.DefaultClient.Do(req)
		if err != nil || resp.StatusCode != 200 {
			b.Fatalf("watch: %v %v", err, resp)
		}
		bodies = append(bodies, resp.Body)
		wg.Add(1)
		go func() {
			defer wg.Done()
			tail := make([]byte, 0, 8<<10)
			buf := make([]byte, 64<<10)
			for {
				k, err := resp.Body.Read(buf)
				tail = append(tail, buf[:k]...)
				if len(tail) > 4<<10 {
					tail = append(tail[:0], tail[len(tail)-(2<<10):]...)
				}
				if err != nil {
					break
				}
			}
			if bytes.Contains(tail, []byte("fell behind")) {
				cut.Add(1)
			}
		}()
	}
	return func() int {
		for _, body := range bodies {
			body.Close()
		}
		wg.Wait()
		return int(cut.Load())
	}
}

func legName(via bool) string { return map[bool]string{false: "direct", true: "vigil"}[via] }

// dial logs in directly (key) or through Vigil (token).
func (f *benchEnv) dial(b *testing.B, via bool) *ssh.Client {
	b.Helper()
	cfg := &ssh.ClientConfig{HostKeyCallback: ssh.InsecureIgnoreHostKey(), Timeout: 30 * time.Second}
	addr := f.sshd.Addr
	if via {
		cfg.User, addr = "root@web1", f.s.sshAddr
		cfg.Auth = []ssh.AuthMethod{ssh.Password(f.tok)}
	} else {
		signer, err := ssh.ParsePrivateKey(f.sshd.ClientKey)
		if err != nil {
			b.Fatal(err)
		}
		cfg.User, cfg.Auth = "root", []ssh.AuthMethod{ssh.PublicKeys(signer)}
	}
	c, err := ssh.Dial("tcp", addr, cfg)
	if err != nil {
		b.Fatal(err)
	}
	return c
}

// vigilCPU returns the vigil serve process's user+system CPU time.
func (f *benchEnv) vigilCPU(b *testing.B) time.Duration {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/stat", f.s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	fields := strings.Fields(string(st[bytes.LastIndexByte(st, ')')+2:]))
	ut, _ := strconv.Atoi(fields[11])
	stime, _ := strconv.Atoi(fields[12])
	return time.Duration(ut+stime) * time.Second / 100 // clock ticks (USER_HZ 100)
}

func (f *benchEnv) vigilRSS(b *testing.B) int64 {
	b.Helper()
	st, err := os.ReadFile(fmt.Sprintf("/proc/%d/status", f.s.cmd.Process.Pid))
	if err != nil {
		b.Fatal(err)
	}
	for _, line := range strings.Split(string(st), "\n") {
		if strings.HasPrefix(line, "VmRSS:") {
			kb, _ := strconv.ParseInt(strings.Fields(line)[1], 10, 64)
			return kb << 10
		}
	}
	return 0
}

// bulk: the real ssh client cats file; reports MB/s and, through Vigil,
// gateway CPU seconds per GiB relayed.
func (f *benchEnv) bulk(b *testing.B, file string, via bool) {
	fi, _ := os.Stat(file)
	b.SetBytes(fi.Size())
	cpu0 := f.vigilCPU(b)
	for b.Loop() {
		cmd := f.s.sshCmd(f.tok, "ssh", "root@web1@127.0.0.1", "cat "+file)
		if !via {
			_, port, _ := net.SplitHostPort(f.sshd.Addr)
			cmd = exec.Command("ssh", "-p", port, "-i", f.sshd.ClientKeyFile, "-o", "StrictHostKeyChecking=no",
				"-o", "UserKnownHostsFile=/dev/null", "-o", "LogLevel=ERROR", "-o", "BatchMode=yes",
				"root@127.0.0.1", "cat "+file)
		}
		var n countWriter
		cmd.Stdout = &n
		if err := cmd.Run(); err != nil || int64(n) != fi.Size() {
			b.Fatalf("%v, %d bytes", err, n)
		}
	}
	if via {
		gib := float64(fi.Size()) * float64(b.N) / (1 << 30)
		b.ReportMetric((f.vigilCPU(b)-cpu0).Seconds()/gib, "cpu-s/GiB")
	}
}

type countWriter int64

func (c *countWriter) Write(p []byte) (int, error) { *c += countWriter(len(p)); return len(p), nil }

// keystroke: one byte typed into `cat` on a pty and its echo back.
// Reports p50 and p99 in µs.
func (f *benchEnv) keystroke(b *testing.B, via bool, watchers int) {
	seen := f.sessionIDs(b)
	c := f.dial(b, via)
	defer c.Close()
	s, err := c.NewSession()
	if err != nil {
		b.Fatal(err)
	}
	defer s.Close()
	if err := s.RequestPty("xterm", 24, 80, ssh.TerminalModes{ssh.ECHO: 0}); err != nil {
		b.Fatal(err)
	}
	in, _ := s.StdinPipe()
	out, _ := s.StdoutPipe()
	if err := s.Start("stty raw -echo; cat"); err != nil {
		b.Fatal(err)
	}
	buf := make([]byte, 64)
	// Warm up until cat echoes.
	in.Write([]byte("x"))
	for got := 0; got < 1; {
		n, err := out.Read(buf)
		if err != nil {
			b.Fatal(err)
		}
		got += bytes.Count(buf[:n], []byte("x"))
	}
	if watchers > 0 {
		defer f.watch(b, f.newSession(b, seen), watchers)()
	}
	var samples []time.Duration
	for b.Loop() {
		start := time.Now()
		in.Write([]byte("k"))
		for {
			n, err := out.Read(buf)
			if err != nil {
				b.Fatal(err)
			}
			if bytes.IndexByte(buf[:n], 'k') >= 0 {
				break
			}
		}
		samples = append(samples, time.Since(start))
	}
	sort.Slice(samples, func(i, j int) bool { return samples[i] < samples[j] })
	b.ReportMetric(float64(samples[len(samples)/2].Microseconds()), "p50-µs")
	b.ReportMetric(float64(samples[len(samples)*99/100].Microseconds()), "p99-µs")
}

// start: connect, authenticate, run `true`, disconnect, from 4 ×
// GOMAXPROCS concurrent clients.
func (f *benchEnv) start(b *testing.B, via bool) {
	b.SetParallelism(4)
	b.RunParallel(func(pb *testing.PB) {
		for pb.Next() {
			c := f.dial(b, via)
			s, err := c.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.Run("true"); err != nil {
				b.Fatal(err)
			}
			c.Close()
		}
	})
}

// idleMemory opens VIGIL_BENCH_SESSIONS (default 200) idle interactive
// sessions (pty + shell) through Vigil and reports the gateway's resident
// memory per session.
func (f *benchEnv) idleMemory(b *testing.B) {
	n := 200
	if v, err := strconv.Atoi(os.Getenv("VIGIL_BENCH_SESSIONS")); err == nil && v > 0 {
		n = v
	}
	for b.Loop() {
		before := f.vigilRSS(b)
		var clients []*ssh.Client
		for i := 0; i < n; i++ {
			c := f.dial(b, true)
			s, err := c.NewSession()
			if err != nil {
				b.Fatal(err)
			}
			if err := s.RequestPty("xterm", 24, 80, nil); err != nil {
				b.Fatal(err)
			}
			if err := s.Shell(); err != nil {
				b.Fatal(err)
			}
			clients = append(clients, c)
		}
		time.Sleep(2 * time.Second) // let the shells settle and the flushers tick
		after := f.vigilRSS(b)
		if out := os.Getenv("VIGIL_BENCH_HEAPPROFILE"); out != "" {
			if b, err := exec.Command("curl", "-s", "-o", out, "http://"+os.Getenv("VIGIL_PPROF_ADDR")+"/debug/pprof/heap").CombinedOutput(); err != nil {
				fmt.Fprintf(os.Stderr, "heap profile: %v %s\n", err, b)
			}
		}
		b.ReportMetric(float64(after-before)/float64(n)/1024, "KiB/session")
		b.ReportMetric(float64(n), "sessions")
		for _, c := range clients {
			c.Close()
		}
	}
}
