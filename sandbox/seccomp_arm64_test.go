package sandbox

func archVMCases() []vmCase                        { return nil }
func archExtraInputs() []vmInput                   { return nil }
func archProbes() []probe                          { return nil }
func archKernelWant() map[string]kernelExpectation { return nil }
