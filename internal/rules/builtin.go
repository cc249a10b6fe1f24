package rules

// Names of the built-in packs.
const (
	PackOSSensitive      = "os-sensitive"
	PackLateralMovement  = "lateral-movement"
	PackCredentialAccess = "credential-access"
	PackDatabase         = "database"
)

// builtinPacks returns a fresh, uncompiled copy of the packs that ship
// with Vigil. Rule IDs are stable: configuration, alerts and audit
// records name them.
//
// Each rule declares keywords, a prefilter: lower-case strings of which
// at least one occurs in any line the rule hits. Lines without one skip
// the rule's expressions; command rules also get quick expressions (see
// part). Together they keep matching a line against every pack in the
// microseconds.
func builtinPacks() []Pack {
	packs := []Pack{
		osSensitive(),
		lateralMovement(),
		credentialAccess(),
		database(),
	}
	for i := range packs {
		for j := range packs[i].Rules {
			if r := &packs[i].Rules[j]; r.parts != nil {
				r.buildPattern()
			}
		}
	}
	return packs
}

func osSensitive() Pack {
	const pack = PackOSSensitive
	return Pack{
		Name:        pack,
		Builtin:     true,
		Description: "Commands that destroy or take down the system, weaken its defences, cover tracks or change who may log in.",
		Rules: []Rule{
			{
				ID: "os.rm-root", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityCritical,
				Description: "Recursive removal of the root directory, a system directory (/etc, /usr, /var, /home, ...) or a home directory.",
				parts: []part{
					recursive(`rm`, `\s+(?:-[a-zA-Z]*[rR][a-zA-Z]*|--recursive)`, alt(sysTarget, homeTarget)),
					command(`rm`, args+`\s+--no-preserve-root`+end),
				},
				keywords: []string{"rm"},
			},
			{
				ID: "os.mkfs", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityCritical,
				Description: "Creating a file system erases the device it is created on.",
				parts:       []part{command(`mkfs(?:\.[\w-]+)?|mke2fs|mkdosfs|mkntfs|mkexfatfs`, end)},
				keywords:    []string{"mkfs", "mke2fs", "mkdosfs", "mkntfs", "mkexfatfs"},
			},
			{
				ID: "os.dd-device", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityCritical,
				Description: "dd writing to a disk or memory device overwrites its contents.",
				parts:       []part{command(`dd|dcfldd|dc3dd`, args+`\s+of=['"]?/dev/`+blockDev)},
				keywords:    devKeywords(),
			},
			{
				ID: "os.write-device", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityCritical,
				Description: "Writing straight to a disk or memory device (redirection, tee, cp) overwrites its contents.",
				parts: []part{
					anywhere(`>\s*['"]?/dev/` + blockDev),
					command(`tee|pv`, args+`\s+['"]?/dev/`+blockDev),
					command(`cp`, args+`\s+['"]?/dev/`+blockDev+`[^\s;&|)<>\x60'"]*`+lastArg),
				},
				keywords: devKeywords(),
			},
			{
				ID: "os.disk-wipe", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityCritical,
				Description: "Wiping a disk's signatures, partition table or blocks destroys its data.",
				parts: []part{
					command(`wipefs`, args+`\s+(?:-[a-zA-Z]*a[a-zA-Z]*|--all|-o|--offset)`+end),
					command(`blkdiscard`, end),
					command(`sgdisk`, args+`\s+(?:-Z|--zap-all|-z|--zap|-o|--clear)`+end),
					command(`shred`, args+`\s+['"]?/dev/`+blockDev),
				},
				keywords: []string{"wipefs", "blkdiscard", "sgdisk", "shred"},
			},
			{
				ID: "os.shutdown", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityHigh,
				Description: "Shutting down, rebooting or changing the runlevel of the machine takes down everything that runs on it.",
				parts: []part{
					command(`shutdown|reboot|halt|poweroff`, end),
					command(`init|telinit`, `\s+[016sS]`+end),
					command(`systemctl`, `(?:\s+-\S+)*\s+(?:poweroff|reboot|soft-reboot|halt|kexec|suspend|hibernate|hybrid-sleep|rescue|emergency)`+end),
					command(`systemctl`, `(?:\s+-\S+)*\s+(?:isolate|start)\s+(?:poweroff|reboot|halt|rescue|emergency|runlevel[016])\.target`+end),
					anywhere(`sysrq-trigger\b`),
				},
				keywords: []string{"shutdown", "reboot", "halt", "poweroff", "init", "systemctl", "sysrq"},
			},
			{
				ID: "os.chmod-root", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityHigh,
				Description: "Recursively changing the permissions or owner of the root or a system directory breaks the system (sudo, sshd and others refuse to run).",
				parts:       []part{recursive(`chmod|chown|chgrp`, `\s+(?:-[a-zA-Z]*R[a-zA-Z]*|--recursive)`, sysTarget)},
				keywords:    []string{"chmod", "chown", "chgrp"},
			},
			{
				ID: "os.setuid", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Setting the setuid bit lets anyone run the file as its owner, a classic way to keep root.",
				parts:       []part{command(`chmod`, args+`\s+(?:(?:[ua]|ug|ugo)?\+[rwxX]*s[rwxXt]*|0?[46][0-7]{3})`+end)},
				keywords:    []string{"chmod"},
			},
			{
				ID: "os.firewall-off", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityHigh,
				Description: "Flushing or disabling the firewall opens the machine to the network.",
				parts: []part{
					command(`iptables|ip6tables|iptables-legacy|ip6tables-legacy|iptables-nft|ip6tables-nft`, args+`\s+(?:-F|--flush|-P\s+\w+\s+ACCEPT)`+end),
					command(`nft`, args+`\s+(?:flush|delete)\s+(?:ruleset|table)`+end),
					command(`ufw`, args+`\s+(?:disable|reset)`+end),
					command(`systemctl`, args+`\s+(?:stop|disable|mask|kill)`+args+`\s+(?:firewalld|ufw|nftables|iptables|ip6tables|netfilter-persistent)(?:\.service)?`+end),
					command(`service`, `\s+(?:firewalld|ufw|nftables|iptables|ip6tables|netfilter-persistent)\s+stop`+end),
				},
				keywords: []string{"iptables", "ip6tables", "nft", "ufw", "firewalld", "netfilter"},
			},
			{
				ID: "os.selinux-off", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityHigh,
				Description: "Turning SELinux or AppArmor off removes the mandatory access controls that confine services.",
				parts: []part{
					command(`setenforce`, `\s+(?:0|[Pp]ermissive)`+end),
					command(`aa-teardown`, end),
					command(`systemctl`, args+`\s+(?:stop|disable|mask|kill)`+args+`\s+apparmor(?:\.service)?`+end),
					command(`service`, `\s+apparmor\s+(?:stop|teardown)`+end),
				},
				keywords: []string{"setenforce", "aa-teardown", "apparmor"},
			},
			{
				ID: "os.audit-off", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityHigh,
				Description: "Stopping the audit or system log daemons, or clearing the audit rules, blinds the machine's own records.",
				parts: []part{
					command(`auditctl`, args+`\s+(?:-e\s*0|-D)`+end),
					command(`systemctl`, args+`\s+(?:stop|disable|mask|kill)`+args+`\s+(?:auditd|rsyslog|syslog-ng|syslog|systemd-journald)(?:\.service)?`+end),
					command(`service`, `\s+(?:auditd|rsyslog|syslog-ng|syslog)\s+stop`+end),
				},
				keywords: []string{"auditctl", "auditd", "syslog", "journald"},
			},
			{
				ID: "os.log-tamper", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Erasing the login, audit or system logs covers tracks.",
				parts: []part{
					anywhere(`>\s*['"]?/var/(?:log|run)/` + sysLogs),
					command(`rm|shred|truncate|unlink|mv`, args+`\s+['"]?/var/(?:log|run)/`+sysLogs),
					command(`cp|ln`, args+`\s+['"]?/var/(?:log|run)/`+sysLogs+`[^\s;&|)<>\x60'"]*`+lastArg),
					command(`journalctl`, args+`\s+--vacuum-(?:time|size|files)\b`),
				},
				keywords: []string{"/var/log/", "/var/run/", "journalctl"},
			},
			{
				ID: "os.history-tamper", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Clearing or disabling the shell history covers tracks.",
				parts: []part{
					command(`history`, `\s+-[a-z]*[cd]`),
					command(`unset`, args+`\s+HIST(?:FILE|SIZE|FILESIZE)`+end),
					anywhere(`\bHISTFILE=`),
					anywhere(`\bHIST(?:FILE)?SIZE=['"]?0*['"]?` + end),
					anywhere(`\bHISTIGNORE=['"]?\*`),
					command(`set`, `\s+\+o\s+history`+end),
					command(`rm|shred|truncate|unlink|ln|wipe|srm`, args+`\s+['"]?[^\s;&|)<>\x60'"]*_history`+end),
					anywhere(`>\s*['"]?[^\s;&|)<>\x60'"]*_history` + end),
				},
				keywords: []string{"history", "histfile", "histsize", "histignore"},
			},
			{
				ID: "os.user-change", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Adding, changing or removing users or groups, another user's password, or the sudo rules changes who may log in and as whom.",
				parts: []part{
					command(`useradd|adduser|usermod|userdel|deluser|groupadd|addgroup|groupmod|groupdel|delgroup|gpasswd|chpasswd|newusers|chage|vipw|vigr|visudo`, end),
					command(`passwd`, `(?:\s+-\S+)*\s+['"]?[\w.][\w.$-]*['"]?`+end),
				},
				// visudo -c only checks the syntax.
				Unless:   soleCommand(`visudo`, visudoOpts+`\s+(?:-[qs]*c[qs]*|--check)`+visudoOpts+`\s*`),
				keywords: []string{"user", "group", "passwd", "chage", "vipw", "vigr", "visudo"},
			},
			{
				ID: "os.sudoers-write", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Writing to the sudo rules (/etc/sudoers, /etc/sudoers.d) or the account files (/etc/passwd, /etc/shadow, /etc/group) changes who may log in and as whom.",
				parts: append(writeTo(authFile),
					command(`chmod|chown|chattr|setfacl`, args+`\s+['"]?`+authFile+end),
					anywhere(`\bsudo(?:\s+-\w+)*\s+-[a-zA-Z]*e[a-zA-Z]*(?:\s+\S+)*\s+['"]?`+authFile+end),
				),
				keywords: []string{"/etc/sudoers", "/etc/passwd", "/etc/shadow", "/etc/group", "/etc/gshadow"},
			},
			{
				ID: "os.authorized-keys", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Adding to an authorized_keys file grants SSH access that outlives this session.",
				parts:       writeTo(`[^\s;&|)<>\x60'"]*authorized_keys2?`),
				keywords:    []string{"authorized_keys"},
			},
			{
				ID: "os.curl-pipe-shell", Pack: pack, Kind: KindCommand, Action: ActionBlock, Severity: SeverityCritical,
				Description: "Running a script straight from the network executes code nobody has reviewed; download it, read it, then run it.",
				parts: []part{
					command(`curl|wget|fetch`, `\s.*`+pipeTo(pipeShells)+end),
					command(`sh|bash|dash|zsh|ksh|fish|ash|source|\.`, `(?:\s+-\S+)*\s+<\(\s*`+markPrefix+`(?:curl|wget|fetch)\b`),
					anywhere(`(?:-[a-z]*c|\beval)\s+['"]?(?:\$\(|\x60)\s*` + cmdPath + `(?:curl|wget|fetch)\b`),
				},
				keywords: []string{"curl", "wget", "fetch"},
			},
		},
	}
}

// visudoOpts are options of visudo that do not make it edit.
const visudoOpts = `(?:\s+(?:-[cqs]+|--check|--quiet|--strict|-f\s*[^\s;&|$()\x60<>]+))*`

// metaCommands look at or change a file's metadata, not its contents.
const metaCommands = `ls|stat|file|chmod|chown|chgrp|chattr|lsattr|getfacl|setfacl|test|touch`

// soleCommand matches a line that is only one command, one of names
// (maybe behind sudo) followed by rest: no second command, no command
// substitution, no redirection. It exempts a command without letting
// "exempt; other" through.
func soleCommand(names, rest string) string {
	return `^\s*(?:sudo(?:\s+-\S+)*\s+)?(?:[\w.~+-]*/)*(?:` + names + `)` + rest + `$`
}

// sysLogs are the logs of logins and of the system under /var/log (or
// /var/run for utmp).
const sysLogs = `(?:auth\.log|secure|wtmp|btmp|lastlog|utmp|syslog|messages|kern\.log|audit/|journal/)`

// authFile is /etc/sudoers, a file under /etc/sudoers.d, or an account
// file.
const authFile = `/etc/(?:sudoers(?:\.d(?:/[^\s;&|)<>\x60'"]*)?)?|passwd|shadow|group|gshadow)`

// pipeShells are the interpreters a download may be piped into.
const pipeShells = `(?:ba|da|z|k|c|tc|fi|a|mk)?sh|python[\d.]*|perl|ruby|php|node|lua|pwsh`

func lateralMovement() Pack {
	const pack = PackLateralMovement
	return Pack{
		Name:        pack,
		Builtin:     true,
		Description: "Reaching other hosts from the target: remote shells and copies, raw network tools, scanners.",
		Rules: []Rule{
			{
				ID: "lat.ssh", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityMedium,
				Description: "SSH from the target to another host, outside Vigil.",
				parts:       []part{command(`ssh|slogin|autossh|mosh|ssh-copy-id`, sshOpts+remoteHost)},
				keywords:    []string{"ssh", "slogin", "mosh"},
			},
			{
				ID: "lat.scp", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityMedium,
				Description: "Copying files between the target and another host with scp.",
				parts:       []part{command(`scp`, args+remotePath)},
				keywords:    []string{"scp"},
			},
			{
				ID: "lat.sftp", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityMedium,
				Description: "An SFTP session from the target to another host.",
				parts:       []part{command(`sftp`, sshOpts+remoteHost)},
				keywords:    []string{"sftp"},
			},
			{
				ID: "lat.rsync", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityMedium,
				Description: "Copying files between the target and another host with rsync.",
				parts:       []part{command(`rsync`, args+remotePath)},
				keywords:    []string{"rsync"},
			},
			{
				ID: "lat.netcat", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Raw network connections (netcat, socat, telnet) are how data leaves and reverse shells arrive.",
				parts:       []part{command(`nc|ncat|netcat|nc\.openbsd|nc\.traditional|socat|telnet|cryptcat|pwncat|pwncat-cs`, end)},
				keywords:    []string{"nc", "netcat", "socat", "telnet", "cryptcat"},
			},
			{
				ID: "lat.dev-tcp", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "The shell's /dev/tcp and /dev/udp open raw network connections, often for a reverse shell.",
				Pattern:     `/dev/(?:tcp|udp)/[^\s/]+/\d+`,
				keywords:    []string{"/dev/tcp/", "/dev/udp/"},
			},
			{
				ID: "lat.scan", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Network scanners map other hosts and services from the target.",
				parts:       []part{command(`nmap|masscan|zmap|rustscan|unicornscan|hping|hping3|arp-scan|nbtscan|netdiscover`, end)},
				keywords:    []string{"nmap", "masscan", "zmap", "rustscan", "unicornscan", "hping", "arp-scan", "nbtscan", "netdiscover"},
			},
		},
	}
}

const (
	// sshOpts are the options of ssh and sftp, those with a value
	// consuming it (-p 22, -i key, -o Opt=x).
	sshOpts = `(?:\s+(?:-[46AaCfGgKkMNnqsTtVvXxYy]*[BbcDEeFIiJLlmOoPpQRSWw]\s*` + word + `|-` + word + `))*`
	// remoteHost is a host argument: it does not start with '-'.
	remoteHost = `\s+['"]?(?:[\w\[]|\$\{?\w)`
	// remotePath is an scp or rsync argument on another host: host:path,
	// user@host:path, [v6addr]:path, host::module or a URL.
	remotePath = `\s+['"]?(?:(?:[\w.%+-]+@)?(?:\[[\w:.%]+\]|\w[\w.-]*):|(?:scp|sftp|ssh|rsync)://)`
)

func credentialAccess() Pack {
	const pack = PackCredentialAccess
	return Pack{
		Name:        pack,
		Builtin:     true,
		Description: "Reading secrets kept on the target: password hashes, private keys, cloud and cluster credentials.",
		Rules: []Rule{
			{
				ID: "cred.shadow", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "The password hashes in /etc/shadow and /etc/gshadow can be cracked offline.",
				parts: []part{
					anywhere(`/etc/g?shadow(?:-|\.(?:bak|old|orig|save|backup|\d+))?\*?` + end),
					command(`getent`, `\s+g?shadow`+end),
					command(`unshadow`, end),
				},
				Unless:   soleCommand(metaCommands, `(?:\s[^;&|$()\x60<>]*)?`),
				keywords: []string{"shadow"},
			},
			{
				ID: "cred.ssh-key", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "SSH private keys (a user's id_* or the host's keys) let whoever holds them log in elsewhere or impersonate this host.",
				parts: []part{
					anywhere(`(?:^|[\s/'"=:])id_(?:rsa|dsa|ecdsa|ed25519)(?:_sk)?\*?` + end),
					anywhere(`ssh_host_\w+_key\*?` + end),
					command(`tar|zip|7z|cp|scp|rsync|cat|base64|xxd|od|gpg`, args+`\s+['"]?[^\s;&|)<>\x60'"]*\.ssh/*\*?`+end),
				},
				// Generating or loading a key, or looking at its metadata,
				// is not reading it.
				Unless:   soleCommand(`ssh-keygen|ssh-add|`+metaCommands, `(?:\s[^;&|$()\x60<>]*)?`),
				keywords: []string{"id_", "ssh_host_", ".ssh"},
			},
			{
				ID: "cred.tls-key", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "TLS private keys let whoever holds them impersonate this host's services.",
				Pattern:     `/etc/(?:ssl|pki/tls)/private\b|/etc/letsencrypt/(?:live|archive)/\S*privkey`,
				keywords:    []string{"/private", "privkey"},
			},
			{
				ID: "cred.cloud", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Cloud CLI credentials (AWS, Google Cloud, Azure, Oracle Cloud) give access to the whole cloud account.",
				Pattern:     `\.aws/credentials|\.config/gcloud(?:/|` + end + `)|application_default_credentials\.json|\.azure(?:/|` + end + `)|\.oci/config`,
				keywords:    []string{".aws/credentials", ".config/gcloud", "application_default_credentials", ".azure", ".oci/config"},
			},
			{
				ID: "cred.kube", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Kubernetes and container registry credentials give access to the cluster and its images.",
				Pattern:     `\.kube/config\b|/etc/kubernetes/(?:admin|kubelet|super-admin|controller-manager|scheduler)\.conf\b|/etc/kubernetes/pki/|\.docker/config\.json\b`,
				keywords:    []string{".kube/config", "/etc/kubernetes/", ".docker/config.json"},
			},
			{
				ID: "cred.dotfiles", Pack: pack, Kind: KindCommand, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Files that store passwords and tokens in the clear (.netrc, .pgpass, .git-credentials, .vault-token, .my.cnf, .pypirc, .npmrc).",
				Pattern:     `(?:^|[\s/'"=~])\.(?:netrc|pgpass|git-credentials|vault-token|my\.cnf|pypirc|npmrc)` + end,
				keywords:    []string{"netrc", "pgpass", "git-credentials", "vault-token", "my.cnf", "pypirc", "npmrc"},
			},
			{
				ID: "cred.private-key-output", Pack: pack, Kind: KindOutput, Action: ActionAlert, Severity: SeverityCritical,
				Description: "A private key was printed to the terminal and is now in the session recording.",
				Pattern:     `-----BEGIN (?:[A-Z0-9]+ )*PRIVATE KEY(?: BLOCK)?-----`,
				keywords:    []string{"private key"},
			},
		},
	}
}

// topLevel matches text that does not leave the parentheses it starts
// in (nesting up to three deep), so that a WHERE inside a subquery does
// not count as the statement's own.
const topLevel = `(?:[^()]|\((?:[^()]|\((?:[^()]|\([^()]*\))*\))*\))*`

func database() Pack {
	const pack = PackDatabase
	return Pack{
		Name:        pack,
		Builtin:     true,
		Description: "SQL that destroys data or changes who may do what in the database.",
		Rules: []Rule{
			{
				ID: "db.drop", Pack: pack, Kind: KindSQL, Action: ActionBlock, Severity: SeverityHigh,
				Description: "DROP destroys a database object and its data.",
				Pattern:     `\bdrop\s+(?:table|database|schema|view|materialized\s+view|index|sequence|function|procedure|routine|aggregate|trigger|role|user|group|owned|extension|type|domain|tablespace|publication|subscription|server|foreign\s+(?:table|data\s+wrapper)|policy|rule|event\s+trigger|collation|conversion|language|operator|statistics|text\s+search|transform|cast|access\s+method)\b`,
				keywords:    []string{"drop"},
			},
			{
				ID: "db.drop-column", Pack: pack, Kind: KindSQL, Action: ActionAlert, Severity: SeverityHigh,
				Description: "ALTER TABLE ... DROP COLUMN destroys the column's data.",
				Pattern:     `\balter\s+table\b.*\bdrop\s+column\b`,
				keywords:    []string{"drop"},
			},
			{
				ID: "db.truncate", Pack: pack, Kind: KindSQL, Action: ActionBlock, Severity: SeverityHigh,
				Description: "TRUNCATE deletes every row of a table.",
				Pattern:     `\btruncate\b`,
				keywords:    []string{"truncate"},
			},
			{
				ID: "db.delete-no-where", Pack: pack, Kind: KindSQL, Action: ActionBlock, Severity: SeverityHigh,
				Description: "DELETE without WHERE deletes every row of the table.",
				Pattern:     `\bdelete\s+from\b`,
				Unless:      `\bdelete\s+from\s` + topLevel + `\bwhere\b`,
				keywords:    []string{"delete"},
			},
			{
				ID: "db.update-no-where", Pack: pack, Kind: KindSQL, Action: ActionBlock, Severity: SeverityHigh,
				Description: "UPDATE without WHERE changes every row of the table.",
				Pattern:     `\bupdate\s+(?:only\s+)?[^\s()]+(?:\s+(?:as\s+)?[^\s()]+)?\s+set\b`,
				Unless:      `\bupdate\s` + topLevel + `\bwhere\b`,
				keywords:    []string{"update"},
			},
			{
				ID: "db.grant", Pack: pack, Kind: KindSQL, Action: ActionAlert, Severity: SeverityMedium,
				Description: "GRANT and REVOKE change who may do what in the database.",
				Pattern:     `^(?:grant|revoke)\b|\balter\s+default\s+privileges\b`,
				keywords:    []string{"grant", "revoke", "privileges"},
			},
			{
				ID: "db.role-change", Pack: pack, Kind: KindSQL, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Creating or altering a role or user changes who may log in to the database and with what rights.",
				Pattern:     `\b(?:create|alter)\s+(?:role|user|group)\b`,
				Unless:      `\b(?:create|alter)\s+user\s+mapping\b`,
				keywords:    []string{"role", "user", "group"},
			},
			{
				ID: "db.copy-program", Pack: pack, Kind: KindSQL, Action: ActionBlock, Severity: SeverityCritical,
				Description: "COPY ... PROGRAM runs a shell command on the database server.",
				Pattern:     `\bcopy\b.*\b(?:to|from)\s+program\b`,
				keywords:    []string{"program"},
			},
			{
				ID: "db.alter-system", Pack: pack, Kind: KindSQL, Action: ActionAlert, Severity: SeverityHigh,
				Description: "ALTER SYSTEM changes the database server's configuration.",
				Pattern:     `\balter\s+system\b`,
				keywords:    []string{"system"},
			},
			{
				ID: "db.server-files", Pack: pack, Kind: KindSQL, Action: ActionAlert, Severity: SeverityHigh,
				Description: "Reading or writing files on the database server (pg_read_file, lo_import, lo_export and the like).",
				Pattern:     `\b(?:pg_read_(?:binary_)?file|pg_ls_dir|pg_stat_file|lo_import|lo_export)\s*\(`,
				keywords:    []string{"pg_read_", "pg_ls_dir", "pg_stat_file", "lo_import", "lo_export"},
			},
		},
	}
}
