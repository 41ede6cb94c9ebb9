// Command lazytree mounts OSTree and Flatpak repositories lazily and
// publishes repositories that the real ostree and flatpak accept.
package main

import (
	"os"

	"github.com/lazytree/lazytree/cli"
)

func main() {
	os.Exit(cli.Main(os.Args[1:]))
}
