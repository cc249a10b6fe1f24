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
		{"Enter password >", true},
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
