// Command lazytree mounts OSTree and Flatpak repositories lazily and
// publishes repositories that the real ostree and flatpak accept.
package main

import (
	"os"

	"github.com/lazytree/lazytree/cli"
	"github.com/lazytree/lazytree/sandbox"
)

func main() {
	// In the process lazytree run re-executes as a sandbox's pid 1, this
	// never returns.
	sandbox.Init()
	os.Exit(cli.Main(os.Args[1:]))
}
