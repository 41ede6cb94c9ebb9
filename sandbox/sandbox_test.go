package sandbox

import (
	"bytes"
	"context"
	"os"
	"testing"
)

func TestMain(m *testing.M) {
	Init()
	os.Exit(m.Run())
}

func TestHostUsrSmoke(t *testing.T) {
	var out, errb bytes.Buffer
	code, err := Run(context.Background(), &Spec{Runtime: "/usr", AppID: "org.example.Smoke", Home: t.TempDir(),
		Command: []string{"sh", "-c", "id; grep -E 'NoNew|Cap|Seccomp' /proc/self/status; ls -la / /etc /dev; cat /etc/passwd; echo $$; env; ls /proc/1/; cat /proc/1/cmdline; ls -la $HOME/.var/app/*"},
		Stdout: &out, Stderr: &errb})
	t.Logf("code %d err %v\n%s\n%s", code, err, out.String(), errb.String())
}
