// Package siem owns the export of Vigil's audit trail to SIEMs: the two
// wire formats (JSON Lines and ArcSight CEF), the sinks that carry them (an
// RFC 5424 syslog collector over TCP or TLS, an HMAC-signed webhook), and
// the Forwarder that sends every audit event to every sink, in order,
// across restarts, with a persistent cursor per sink in the
// audit_forward_cursors table.
//
// It does not write the audit trail (package audit does), verify its hash
// chain, or filter it: a SIEM receives every event.
//
// # Delivery
//
// Each sink has a cursor, the seq of the last event it is known to have.
// A sink seen for the first time (or renamed) starts at seq 0, the
// beginning of the log, so adding a sink replays the whole trail to it
// and nothing is ever missing from the SIEM; on a large trail that first
// catch-up takes a while (vigil_siem_backlog shows it). The Forwarder reads the events after the cursor
// in batches, sends a batch, and only once the sink reports it delivered
// writes the new cursor. A failed send is retried from the cursor with
// backoff (1 s doubling to 1 min) until it succeeds: an event is never
// skipped and nothing after it is sent first. Delivery is therefore at
// least once: a crash (or a lost connection) between the delivery and the
// cursor write sends that batch again after the restart. Every event
// carries its seq (1, 2, 3, … without gaps) and its chain hash, and
// receivers deduplicate on seq. A caught-up sink waits for the audit log
// to announce new events (audit.Log.Changed), and looks every 5 s anyway.
//
// # Formats
//
// JSONL writes one JSON object per line with the keys seq, time (RFC 3339
// with nanoseconds, UTC), type, actor, target, session, source, data,
// prev_hash and hash.
//
// CEF writes one line
//
//	CEF:0|Vigil|Vigil|VERSION|TYPE|NAME|SEVERITY|EXTENSIONS
//
// where VERSION is the Vigil build's module version ("dev" for a
// development build), TYPE the event type, NAME the type in words (dots
// and underscores as spaces) followed by data.outcome when the event has
// one ("ssh auth denied"), and SEVERITY 0 to 10:
//
//	| event                                        | CEF severity                                                 |
//	| -------------------------------------------- | ------------------------------------------------------------ |
//	| breakglass.*                                 | 10                                                           |
//	| rule.hit                                     | data.severity: low 3, medium 5, high 8, critical 10, other 5 |
//	| *.mismatch, *_mismatch (host key mismatch)   | 8                                                            |
//	| *.denied, *_denied, or data.outcome "denied" | 7                                                            |
//	| *.failed, *_failed, or data.outcome "failed" | 6                                                            |
//	| anything else                                | 3                                                            |
//
// The extensions, in this order (an empty field is left out):
//
//	| CEF key                          | from                                        |
//	| -------------------------------- | ------------------------------------------- |
//	| rt                               | time, milliseconds since the Unix epoch     |
//	| externalId                       | seq                                         |
//	| cat                              | type                                        |
//	| suser                            | actor                                       |
//	| dhost, destinationServiceName    | target (a Vigil target name)                |
//	| src, spt                         | source IPv4 address and port                |
//	| c6a2Label, c6a2                  | "Source IPv6 Address", source IPv6 address  |
//	| cs1Label, cs1                    | "session", session id                       |
//	| cs2Label, cs2                    | "hash", the event's chain hash              |
//	| cs3Label, cs3                    | "prevHash", the previous event's hash       |
//	| cs4Label, cs4                    | "source", a source that is not an address   |
//	| outcome                          | data.outcome, when a string                 |
//	| msg                              | data as compact JSON                        |
//
// In header fields `\` and `|` are escaped with a backslash; in extension
// values `\` and `=` are, and CR and LF are written as `\r` and `\n`
// (header fields cannot hold them). Other control characters (C0 but tab,
// DEL, C1) and the Unicode line and paragraph separators, which CEF cannot
// escape and some readers take as line ends, become U+FFFD, as do invalid
// UTF-8 sequences: a CEF event is always one line. JSONL keeps them all
// exactly (JSON escapes them).
//
// # Syslog
//
// The syslog sink sends each event as an RFC 5424 message
//
//	<PRI>1 TIMESTAMP HOSTNAME vigil - MSGID [vigil@32473 seq="N" hash="H"] MSG
//
// with facility authpriv (10) and a severity from the CEF severity (9–10
// crit, 7–8 warning, 4–6 notice, 0–3 info); TIMESTAMP is the event's time
// in UTC to the microsecond (RFC 5424 allows no more than six fractional
// digits); MSGID is the event type (printable ASCII, other bytes as '_', at
// most 32 characters); MSG is the event in the sink's format, preceded by
// a UTF-8 BOM only when it is not pure ASCII (RFC 5424 §6.4: a UTF-8 MSG
// must start with a BOM; an ASCII one is MSG-ANY and needs none).
// Messages are framed by octet counting (RFC 6587) over TCP, or over TLS
// 1.2+ (RFC 5425). Messages are not truncated: a collector must accept
// the largest event (RFC 5425 only requires 2 KiB; rsyslog and syslog-ng
// take a configurable maximum).
//
// Syslog over TCP has no acknowledgement, so a batch counts as delivered
// when it was written, the collector's TCP stack has acknowledged every
// byte (on Linux, SIOCOUTQ reaches 0) and the connection is still up (a
// very short read times out: a collector never sends, so data, EOF or a
// reset mean it went away and may have lost what it was sent). On other
// systems the acknowledgement cannot be read and delivery means the write
// succeeded and the connection then looked healthy. Neither proves the
// collector stored the batch: a collector that crashes after its kernel
// acknowledged the bytes loses them. Where losing none matters, use the
// webhook, whose 2xx answer is an application acknowledgement.
//
// A collector that stops reading holds a batch up for at most 30 s of
// writing and 30 s of waiting for acknowledgement; then the connection is
// dropped and the batch sent again on a new one, so a collector stalled
// that long receives part of it twice. A refused or failed connection is
// retried with the Forwarder's backoff; connecting (TLS handshake
// included) times out after 10 s.
//
// # Webhook
//
// The webhook sink POSTs batches (at most 500 events and 1 MiB) as a JSON
// array, signed as alert webhooks are: see Webhook.
package siem
