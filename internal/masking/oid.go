package masking

// PostgreSQL type OIDs (pg_type.oid) of the types whose values are text:
// their text and binary formats are the same characters (jsonb's binary
// format adds a version byte), so the value detectors can scan either.
const (
	oidUnspecified = 0 // a parameter or column whose type the server left open
	oidName        = 19
	oidText        = 25
	oidJSON        = 114
	oidXML         = 142
	oidUnknown     = 705
	oidBPChar      = 1042
	oidVarchar     = 1043
	oidJSONB       = 3802
)

// textual reports whether values of the type oid are text. Only the types
// above count: a type with no fixed OID (citext, a domain over text, an
// enum) or an array of text is not scanned, and a column rule masks it as
// NULL, which every client can decode.
func textual(oid uint32) bool {
	switch oid {
	case oidUnspecified, oidName, oidText, oidJSON, oidXML, oidUnknown, oidBPChar, oidVarchar, oidJSONB:
		return true
	}
	return false
}
