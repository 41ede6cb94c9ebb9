package sandbox

// TEMPORARY until the seccomp branch lands.

type FilterOptions struct{ Devel bool }

func Filter(FilterOptions) ([]int, error) { return nil, nil }
func loadFilter([]int) error              { return nil }
func setNoNewPrivs() error {
	return unixPrctlNNP()
}

func unixPrctlNNP() error { return nil }
