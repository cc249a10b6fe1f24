package sshgw

import (
	"encoding/binary"
	"testing"
)

func TestSplitUser(t *testing.T) {
	tests := []struct{ in, login, target string }{
		{"root@web1", "root", "web1"},
		{"web1", "", "web1"},
		{"a@b@web1", "a@b", "web1"},
		{"root@", "root", ""},
		{"", "", ""},
	}
	for _, tc := range tests {
		if l, tg := splitUser(tc.in); l != tc.login || tg != tc.target {
			t.Errorf("splitUser(%q) = %q, %q; want %q, %q", tc.in, l, tg, tc.login, tc.target)
		}
	}
}

func TestIsSCPAndEnv(t *testing.T) {
	for cmd, want := range map[string]bool{
		"scp -t /tmp/x":           true,
		"/usr/bin/scp -f -p /etc": true,
		"scp --help":              false,
		"echo scp -t":             false,
		"":                        false,
	} {
		if got := isSCP(cmd); got != want {
			t.Errorf("isSCP(%q) = %v, want %v", cmd, got, want)
		}
	}
	for name, want := range map[string]bool{"LANG": true, "LC_ALL": true, "TZ": true, "LD_PRELOAD": false, "PATH": false, "LANGUAGE": false} {
		if got := envAllowed(DefaultEnvAllow, name); got != want {
			t.Errorf("envAllowed(%q) = %v, want %v", name, got, want)
		}
	}
}

// packet builds an SFTP packet from its type and fields.
func packet(typ byte, fields ...any) []byte {
	body := []byte{typ}
	for _, f := range fields {
		switch v := f.(type) {
		case uint32:
			body = binary.BigEndian.AppendUint32(body, v)
		case uint64:
			body = binary.BigEndian.AppendUint64(body, v)
		case string:
			body = binary.BigEndian.AppendUint32(body, uint32(len(v)))
			body = append(body, v...)
		}
	}
	return append(binary.BigEndian.AppendUint32(nil, uint32(len(body))), body...)
}

func TestSFTPStreamReassembly(t *testing.T) {
	var stream []byte
	stream = append(stream, packet(fxpOpen, uint32(1), "/etc/passwd", uint32(1))...)
	big := make([]byte, 100<<10) // a WRITE larger than the kept prefix
	stream = append(stream, packet(fxpWrite, uint32(2), "h1", uint64(0), string(big))...)
	stream = append(stream, packet(fxpRemove, uint32(3), "/tmp/x")...)
	for _, chunk := range []int{1, 3, 7, 4096, len(stream)} {
		var s sftpStream
		var got []byte
		var totals []int
		for i := 0; i < len(stream); i += chunk {
			s.feed(stream[i:min(i+chunk, len(stream))], func(prefix []byte, total int) {
				got = append(got, prefix[0])
				totals = append(totals, total)
				if len(prefix) > sftpPrefix {
					t.Fatalf("kept %d bytes of a packet, bound is %d", len(prefix), sftpPrefix)
				}
			})
		}
		if string(got) != string([]byte{fxpOpen, fxpWrite, fxpRemove}) || totals[1] != 1+4+4+2+8+4+len(big) {
			t.Fatalf("chunk %d: got types %v totals %v", chunk, got, totals)
		}
	}
	var s sftpStream
	s.feed([]byte{0xff, 0xff, 0xff, 0xff, 1}, func([]byte, int) { t.Fatal("a 4 GiB packet was accepted") })
	if !s.broken {
		t.Fatal("an oversized packet did not stop the log")
	}
}
