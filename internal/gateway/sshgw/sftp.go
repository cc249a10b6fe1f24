package sshgw

import (
	"encoding/binary"
	"fmt"
)

// SFTP (draft-ietf-secsh-filexfer-02, version 3) packet types Vigil logs.
const (
	fxpOpen     = 3
	fxpClose    = 4
	fxpRead     = 5
	fxpWrite    = 6
	fxpSetstat  = 9
	fxpOpendir  = 11
	fxpRemove   = 13
	fxpMkdir    = 14
	fxpRmdir    = 15
	fxpRename   = 18
	fxpSymlink  = 20
	fxpHandle   = 102
	fxpData     = 103
	fxpExtended = 200
)

// Bounds on what the SFTP log keeps.
const (
	// sftpPrefix is how much of each packet is kept: enough for the
	// header fields and two paths, never the file data.
	sftpPrefix = 8 << 10
	// sftpMaxPacket: a longer packet means the stream is not SFTP as
	// expected; logging stops (the relay does not).
	sftpMaxPacket = 1 << 20
	// sftpMaxOpen bounds tracked open handles and requests.
	sftpMaxOpen = 1024
)

// sftpStream reassembles packets of one direction, keeping only a prefix
// of each, in bounded memory.
type sftpStream struct {
	lenBuf [4]byte
	lenN   int
	need   int // bytes of the current packet still to come
	total  int // length of the current packet
	prefix []byte
	broken bool
}

// feed consumes p and calls f with the prefix and full length of each
// completed packet.
func (s *sftpStream) feed(p []byte, f func(prefix []byte, total int)) {
	for len(p) > 0 && !s.broken {
		if s.need == 0 {
			n := copy(s.lenBuf[s.lenN:], p)
			s.lenN += n
			p = p[n:]
			if s.lenN < 4 {
				return
			}
			s.lenN = 0
			s.total = int(binary.BigEndian.Uint32(s.lenBuf[:]))
			if s.total == 0 || s.total > sftpMaxPacket {
				s.broken = true
				return
			}
			s.need, s.prefix = s.total, s.prefix[:0]
		}
		n := min(s.need, len(p))
		if keep := sftpPrefix - len(s.prefix); keep > 0 {
			s.prefix = append(s.prefix, p[:min(n, keep)]...)
		}
		s.need -= n
		p = p[n:]
		if s.need == 0 {
			f(s.prefix, s.total)
		}
	}
}

// sftpFile is an open handle being tracked.
type sftpFile struct {
	path          string
	read, written int64
	write, isDir  bool
}

// sftpLog turns an SFTP session into operations (path, operation, size)
// for the recording, the session's command list and the audit log. It
// never records file contents.
type sftpLog struct {
	c        *conn
	up, down sftpStream
	opens    map[uint32]*sftpFile // request id → file being opened
	reads    map[uint32]string    // request id → handle read
	handles  map[string]*sftpFile
}

func newSFTPLog(c *conn) *sftpLog {
	return &sftpLog{c: c, opens: map[uint32]*sftpFile{}, reads: map[uint32]string{}, handles: map[string]*sftpFile{}}
}

// wire reads SFTP's big-endian fields from a packet prefix.
type wire struct {
	b  []byte
	ok bool
}

func (w *wire) u32() uint32 {
	if len(w.b) < 4 {
		w.ok = false
		return 0
	}
	v := binary.BigEndian.Uint32(w.b)
	w.b = w.b[4:]
	return v
}

func (w *wire) str() string {
	n := int(w.u32())
	if !w.ok || n > len(w.b) {
		w.ok = false
		return ""
	}
	s := string(w.b[:n])
	w.b = w.b[n:]
	return s
}

func (w *wire) skip(n int) {
	if len(w.b) < n {
		w.ok = false
		return
	}
	w.b = w.b[n:]
}

// client takes bytes the client sent.
func (l *sftpLog) client(p []byte) {
	l.up.feed(p, func(pkt []byte, total int) {
		w := &wire{b: pkt[1:], ok: true}
		typ := pkt[0]
		id := w.u32()
		switch typ {
		case fxpOpen, fxpOpendir:
			path := w.str()
			flags := uint32(0)
			if typ == fxpOpen {
				flags = w.u32()
			}
			if w.ok && len(l.opens) < sftpMaxOpen {
				// SSH_FXF_WRITE 0x02, CREAT 0x08, TRUNC 0x10, APPEND 0x04.
				l.opens[id] = &sftpFile{path: path, write: flags&0x1e != 0, isDir: typ == fxpOpendir}
			}
		case fxpRead:
			h := w.str()
			if w.ok && len(l.reads) < sftpMaxOpen {
				l.reads[id] = h
			}
		case fxpWrite:
			h := w.str()
			w.skip(8) // offset
			n := w.u32()
			if f := l.handles[h]; w.ok && f != nil {
				f.written += int64(n)
			}
		case fxpClose:
			h := w.str()
			if f := l.handles[h]; w.ok && f != nil {
				delete(l.handles, h)
				l.report(f)
			}
		case fxpRemove, fxpRmdir, fxpMkdir, fxpSetstat:
			path := w.str()
			if w.ok {
				l.op(map[byte]string{fxpRemove: "remove", fxpRmdir: "rmdir", fxpMkdir: "mkdir", fxpSetstat: "setstat"}[typ], path, 0)
			}
		case fxpRename, fxpSymlink:
			from, to := w.str(), w.str()
			if w.ok {
				l.op(map[byte]string{fxpRename: "rename", fxpSymlink: "symlink"}[typ], from+" -> "+to, 0)
			}
		case fxpExtended:
			name := w.str()
			if op, ok := map[string]string{"posix-rename@openssh.com": "rename", "hardlink@openssh.com": "hardlink"}[name]; ok {
				from, to := w.str(), w.str()
				if w.ok {
					l.op(op, from+" -> "+to, 0)
				}
			}
		}
	})
}

// server takes bytes the target sent.
func (l *sftpLog) server(p []byte) {
	l.down.feed(p, func(pkt []byte, total int) {
		w := &wire{b: pkt[1:], ok: true}
		id := w.u32()
		switch pkt[0] {
		case fxpHandle:
			h := w.str()
			if f := l.opens[id]; w.ok && f != nil {
				delete(l.opens, id)
				if len(l.handles) < sftpMaxOpen {
					l.handles[h] = f
				}
			}
		case fxpData:
			if h, ok := l.reads[id]; ok {
				delete(l.reads, id)
				if f := l.handles[h]; f != nil {
					f.read += int64(total - 9) // type, id, data length
				}
			}
		default:
			delete(l.opens, id)
			delete(l.reads, id)
		}
	})
}

// report logs a closed file: an upload, a download, or a listing.
func (l *sftpLog) report(f *sftpFile) {
	switch {
	case f.isDir:
		l.op("list", f.path, 0)
	case f.written > 0 || f.write:
		l.op("upload", f.path, f.written)
	default:
		l.op("download", f.path, f.read)
	}
}

func (l *sftpLog) op(op, path string, size int64) {
	c := l.c
	what := fmt.Sprintf("sftp %s %s", op, path)
	if op == "upload" || op == "download" {
		what += fmt.Sprintf(" (%d bytes)", size)
	}
	if c.recording() {
		c.rec.Marker(c.s.cfg.Now(), what)
	}
	c.addCommand(what)
	c.audit("ssh.file_transfer", map[string]any{"protocol": "sftp", "op": op, "path": path, "bytes": size})
}

// close reports files still open when the channel ends.
func (l *sftpLog) close() {
	for h, f := range l.handles {
		delete(l.handles, h)
		l.report(f)
	}
}
