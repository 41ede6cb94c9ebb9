package sandbox

import (
	"crypto/rand"
	"encoding/hex"
	"fmt"
	"strings"
)

// hostEnvAllowed are the host variables a sandboxed command inherits: the
// terminal and the locale, nothing that changes how programs load or
// where they look (LD_PRELOAD, LD_LIBRARY_PATH, PYTHONPATH, PATH, ... never
// pass).
var hostEnvAllowed = map[string]bool{
	"TERM": true, "COLORTERM": true, "NO_COLOR": true,
	"LANG": true, "LANGUAGE": true, "TZ": true,
}

// buildEnv is the command's environment: the allowlisted host variables,
// the sandbox's own, then extra (the app's [Environment], --env), later
// entries replacing earlier ones.
func buildEnv(host []string, w *wire, extra []string) []string {
	var order []string
	vals := map[string]string{}
	set := func(k, v string) {
		if _, ok := vals[k]; !ok {
			order = append(order, k)
		}
		vals[k] = v
	}
	for _, kv := range host {
		k, v, ok := strings.Cut(kv, "=")
		if ok && (hostEnvAllowed[k] || strings.HasPrefix(k, "LC_") && validEnvName(k)) {
			set(k, v)
		}
	}
	set("PATH", "/app/bin:/usr/bin")
	set("HOME", w.Home)
	set("USER", w.UserName)
	set("LOGNAME", w.UserName)
	set("SHELL", "/bin/sh")
	set("XDG_RUNTIME_DIR", fmt.Sprintf("/run/user/%d", w.UID))
	set("XDG_DATA_DIRS", "/app/share:/usr/share")
	set("container", "lazytree")
	if w.AppID != "" {
		base := w.Home + "/.var/app/" + w.AppID
		set("FLATPAK_ID", w.AppID)
		set("XDG_DATA_HOME", base+"/data")
		set("XDG_CONFIG_HOME", base+"/config")
		set("XDG_CACHE_HOME", base+"/cache")
	}
	for _, kv := range extra {
		k, v, ok := strings.Cut(kv, "=")
		if ok && validEnvName(k) && !strings.ContainsRune(v, 0) {
			set(k, v)
		}
	}
	out := make([]string, 0, len(order))
	for _, k := range order {
		out = append(out, k+"="+vals[k])
	}
	return out
}

// validEnvName accepts the names a shell can set.
func validEnvName(k string) bool {
	if k == "" || k[0] >= '0' && k[0] <= '9' {
		return false
	}
	for _, r := range k {
		if !(r == '_' || r >= 'a' && r <= 'z' || r >= 'A' && r <= 'Z' || r >= '0' && r <= '9') {
			return false
		}
	}
	return true
}

// ValidEnv checks one K=V assignment from a user or a remote's metadata.
func ValidEnv(kv string) error {
	k, v, ok := strings.Cut(kv, "=")
	if !ok || !validEnvName(k) {
		return fmt.Errorf("environment %q: want NAME=VALUE", kv)
	}
	if strings.ContainsRune(v, 0) {
		return fmt.Errorf("environment %s: value contains NUL", k)
	}
	return nil
}

func randomHex(n int) string {
	b := make([]byte, n)
	rand.Read(b)
	return hex.EncodeToString(b)
}
