package sshgw

import "testing"

func TestSecretPrompt(t *testing.T) {
	cases := []struct {
		prompt string
		want   bool
	}{
		{"[sudo] password for alice: ", true},
		{"Password: ", true},
		{"alice@db1's password: ", true},
		{"Enter passphrase for key '/home/a/.ssh/id_ed25519': ", true},
		{"Enter PIN for 'PIV Card': ", true},
		{"Secret: ", true},
		{"Verification code: ", true},
		{"\x1b[1;31mPassword:\x1b[0m ", true},
		{"Enter password >", false},
		{"PS C:\\secrets> ", false},
		{"(venv) token-svc> ", false},
		{"Enter pass phrase for /etc/ssl/private/key.pem: ", true},
		{"vigil$ ", false},
		{"root@web1:~# ", false},
		{"", false},
		{"spinning: ", false},
		{"mysql> ", false},
		{"Do you want to continue? [Y/n] ", false},
		{"password changed for alice\r", false},
	}
	for _, tc := range cases {
		if got := secretPrompt(tc.prompt); got != tc.want {
			t.Errorf("secretPrompt(%q): got %v, want %v", tc.prompt, got, tc.want)
		}
	}
}

func TestRedactSecrets(t *testing.T) {
	cases := []struct{ in, want string }{
		{"ls -la", "ls -la"},
		{"export TOKEN=abc.def.ghi", "export TOKEN=***"},
		{"curl -H 'X-Api-Key: s3cr3t' https://x", "curl -H 'X-Api-Key: ***' https://x"},
		{`PGPASSWORD="hunter2 x" psql`, `PGPASSWORD=*** psql`},
		{"mysql -u root -pHunter2 db", "mysql -u root -p*** db"},
		{"mkdir -p /tmp/x", "mkdir -p /tmp/x"},
		{"MIIEvQIBADANBgkqhkiG9w0BAQEFAASCBKcwggSjAgEAAoIBAQC7", "[base64 data]"},
		{"echo done", "echo done"},
		{"curl -H 'Authorization: Bearer eyJhbGciOi.eyJzdWIi.c2ln' https://x", "curl -H 'Authorization: *** ***' https://x"},
		{"curl -H 'Authorization: Basic dXNlcjpwYXNz' https://x", "curl -H 'Authorization: *** ***' https://x"},
		{"git commit --author=alice -m fix", "git commit --author=alice -m fix"},
	}
	for _, tc := range cases {
		if got := redactSecrets(tc.in); got != tc.want {
			t.Errorf("redactSecrets(%q): got %q, want %q", tc.in, got, tc.want)
		}
	}
}

func TestSecretLooking(t *testing.T) {
	cases := []struct {
		line string
		want bool
	}{
		{"Hunter2Secret!", true},
		{"CorrectHorseBatteryStaple", true},
		{"uptime", false},
		{"docker-compose", false},
		{"./deploy.sh", false},
		{"git status", false},
		{"s3cr3t-pw", true},
	}
	for _, tc := range cases {
		if got := secretLooking(tc.line); got != tc.want {
			t.Errorf("secretLooking(%q): got %v, want %v", tc.line, got, tc.want)
		}
	}
}
