package rules

import "strings"

// This file holds the building blocks of the built-in shell rules: a
// command name at a command position, argument lists, the targets that
// destroy a system. They are regular expression fragments meant to be
// concatenated; none captures.

const (
	// cmdStart is where a shell command can begin: the start of the line,
	// or after ; & && | || ( { ! ` or $(, then optional white space.
	cmdStart = `(?:^|[;&|({!\x60]|\$\()\s*`

	// wrapOpt is the options of a command wrapper such as nice or xargs:
	// flags, flags with a value after =, and bare numbers (nice -n 10,
	// timeout 5, taskset 0x1, xargs -I {}).
	wrapOpt = `(?:\s+(?:--?[\w-]+(?:=\S*)?|\d[\w.:]*|\{\}))*`

	// cmdPath is what may stand between a command position and the
	// command's name: an escape that bypasses aliases (\rm), a quote
	// ("rm"), a directory (/bin/rm, ./rm, /usr/local/sbin/rm).
	cmdPath = `(?:\\|['"])?(?:[\w.~+-]*/)*`

	// end is the end of a word: the end of the line, white space, a
	// command separator, a redirection or a quote. It consumes the
	// character, so it goes last.
	end = `(?:$|[\s;&|)<>\x60'"])`

	// word is one shell word that does not cross a command separator.
	word = `[^\s;&|)<>\x60]+`

	// args is any number of arguments.
	args = `(?:\s+` + word + `)*`

	// lastArg follows an argument to say it is the command's last, as the
	// destination of cp or mv is.
	lastArg = `['"]?\s*(?:$|[;&|)\x60])`
)

// cmdPrefixes are the words a command can hide behind and still run: each
// alternative consumes its trailing white space, and they may repeat
// (sudo env X=1 nohup rm).
var cmdPrefixes = []string{
	// Variable assignments: X=1, X='a b', X="".
	`\w+=(?:'[^']*'|"[^"]*"|[^\s'"]\S*|)\s+`,
	// Privilege elevation, with options and their values (-u user).
	`(?:sudo|doas|run0|pkexec)(?:\s+(?:-[ugCDprtTUh]\s*[^\s-]\S*|--?[\w-]*(?:=\S*)?))*\s+`,
	// env with its options; its assignments are matched above.
	`env(?:\s+(?:-[iv0]+|-[uCS]\s*[^\s-]\S*|--?[\w-]*(?:=\S*)?))*\s+`,
	// Shell keywords after which a command follows.
	`(?:then|do|else|elif|if|while|until|time|coproc|!|\{)\s+`,
	// Commands that run the rest of the line as a command.
	`(?:nohup|exec|command|builtin|busybox|eval|setsid|unbuffer|stdbuf|nice|ionice|xargs|timeout|strace|ltrace|watch|chrt|taskset|torsocks|tsocks|proxychains4?)` + wrapOpt + `\s+`,
	// sshpass runs ssh with a password from its options.
	`sshpass(?:\s+-[pfdeP]\s*\S+|\s+-\S+)*\s+`,
	`chroot(?:\s+--?[\w-]+(?:=\S*)?)*\s+\S+\s+`,
	// A shell or su running its -c string: the quote that opens the
	// string is matched by cmdPath.
	`(?:[\w.~+-]*/)*(?:ba|da|z|k|c|tc|fi|a|mk)?sh(?:\s+-[\w-]+)*?\s+-[a-z]*c[a-z]*\s+`,
	`su(?:\s+\S+)*?\s+(?:-c\s+|--command[=\s]\s*)`,
}

// cmdPrefix is any run of cmdPrefixes.
var cmdPrefix = `(?:` + strings.Join(cmdPrefixes, "|") + `)*`

// A part is one alternative of a built-in pattern: either a command
// part, one of names used as a command and then re, or an anywhere part,
// re matched anywhere in the line.
//
// The full expression of a command part is large (the command position
// and its prefixes), large enough that Go's regexp runs it on its
// slowest engine, several microseconds a line. So each built-in rule also
// gets quick expressions that together accept every line the full one
// does: for each command name, the name then re, unanchored. Each starts
// with a literal, which Go's regexp finds with a substring search, so a
// line without the command costs next to nothing and the full expression
// only runs on lines that nearly hit.
type part struct {
	names string // alternation of command names, each led by a literal; "" for an anywhere part
	re    string
}

// command returns the part matching one of names (a regular expression
// alternation such as `rm` or `mkfs(?:\.[\w-]+)?|mke2fs`) used as a
// command: at a command position, behind any prefix, with or without a
// directory; then rest, usually `\s+...` or end.
//
// So command(`rm`, rest) matches after "rm", "  sudo -u root /bin/rm",
// "ls; rm", "true && \rm", "$(rm" and "sh -c 'rm", but not after the rm
// of "echo rm", "git rm" or "format".
func command(names, rest string) part { return part{names: names, re: rest} }

// anywhere returns the part matching re anywhere in the line.
func anywhere(re string) part { return part{re: re} }

// cmdRE is the full expression of names used as a command, for a plain
// expression (an Unless).
func cmdRE(names string) string {
	return cmdStart + cmdPrefix + cmdPath + `(?:` + names + `)['"]?`
}

// pipeTo matches a pipe into one of names used as a command.
func pipeTo(names string) string {
	return `\|\s*` + markPrefix + `(?:` + names + `)['"]?`
}

// markPrefix stands for cmdPrefix and cmdPath inside a part's re. It is
// expanded in full for the rule's Pattern and to .* for its quick
// expressions.
const markPrefix = "\x00"

// buildPattern sets r's Pattern and quick expressions from its parts.
func (r *Rule) buildPattern() {
	full := make([]string, 0, len(r.parts))
	var quick []string
	worth := false // whether the quick expressions are cheaper than Pattern
	for _, p := range r.parts {
		re := strings.ReplaceAll(p.re, markPrefix, cmdPrefix+cmdPath)
		q := strings.ReplaceAll(p.re, markPrefix, `.*`)
		if p.names == "" {
			full = append(full, re)
			quick = append(quick, q)
			worth = worth || q != re
			continue
		}
		full = append(full, cmdRE(p.names)+re)
		for _, name := range splitAlt(p.names) {
			quick = append(quick, name+`['"]?`+q)
		}
		worth = true
	}
	r.Pattern = full[0]
	if len(full) > 1 {
		r.Pattern = alt(full...)
	}
	if worth {
		r.quick = quick
	}
}

// splitAlt splits the alternation re at its top-level bars.
func splitAlt(re string) []string {
	var out []string
	depth, start := 0, 0
	for i := 0; i < len(re); i++ {
		switch re[i] {
		case '\\':
			i++
		case '(', '[':
			depth++
		case ')', ']':
			depth--
		case '|':
			if depth == 0 {
				out = append(out, re[start:i])
				start = i + 1
			}
		}
	}
	return append(out, re[start:])
}

// alt joins regular expressions as alternatives.
func alt(res ...string) string { return `(?:` + strings.Join(res, "|") + `)` }

// System targets: removing, chmod-ing or chown-ing one recursively
// breaks the system.
const (
	// sysDirs are the top-level directories of a Linux system.
	sysDirs = `bin|boot|dev|etc|home|lib|lib32|lib64|libx32|opt|proc|root|run|sbin|snap|srv|sys|usr|var`
	// sysTarget is an argument naming the root, its contents (/*) or a
	// whole system directory (/etc, /etc/, /etc/*), maybe quoted.
	sysTarget = `\s+['"]?(?:/+\.?\*?|/+(?:` + sysDirs + `)/*\*?)['"]?`
	// homeTarget is an argument naming the user's whole home directory.
	homeTarget = `\s+['"]?(?:~/*\*?|\$\{?HOME\}?/*\*?)['"]?`
)

// recursive returns the part of a recursive command (one of names, made
// recursive by the option flag) on a target, in either order: "rm -rf /",
// "rm / -rf", "rm -r -f -- /".
func recursive(names, flag, target string) part {
	return command(names, alt(
		args+flag+args+target+end,
		args+target+args+flag+end,
	))
}

// blockDevs are the names under /dev/ of disks and memory: writing to one
// destroys data. LVM volumes are only seen under /dev/mapper/.
var blockDevs = []string{"sd", "hd", "vd", "xvd", "nvme", "mmcblk", "dm-", "md", "mapper/", "disk/", "loop", "nbd", "rbd", "zd", "sr", "mem", "kmem", "port", "root"}

// blockDev matches what follows /dev/ in the path of a disk or memory.
const blockDev = `(?:sd[a-z]|hd[a-z]|vd[a-z]|xvd[a-z]|nvme\d|mmcblk\d|dm-\d|md\d|mapper/|disk/|loop\d|nbd\d|rbd\d|zd\d|sr\d|mem\b|kmem\b|port\b|root\b)`

// devKeywords returns the keywords of a rule about block devices.
func devKeywords() []string {
	out := make([]string, len(blockDevs))
	for i, d := range blockDevs {
		out[i] = "/dev/" + d
	}
	return out
}

// editors are the commands that edit a file in place.
const editors = `vi|vim|nvim|view|nano|pico|emacs|ed|ex|joe|mcedit|micro|sudoedit`

// writeTo returns the parts of a command line that writes to a file
// matched by file (a fragment with no leading white space and no end): a
// redirection into it, tee, the destination of cp/mv/install/ln/rsync,
// sed -i or perl -i on it, an editor on it, dd of= it.
func writeTo(file string) []part {
	return []part{
		anywhere(`>\s*['"]?` + file + end),
		command(`tee`, args+`\s+['"]?`+file+end),
		command(`cp|mv|install|ln|rsync`, args+`\s+['"]?`+file+lastArg),
		command(`sed|perl`, args+`\s+(?:-[a-zA-Z]*i\S*|--in-place\S*)`+args+`\s+['"]?`+file+end),
		command(editors, args+`\s+['"]?`+file+end),
		command(`dd`, args+`\s+of=['"]?`+file+end),
	}
}
