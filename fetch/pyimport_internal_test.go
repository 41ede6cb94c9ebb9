package fetch

import (
	"fmt"
	"reflect"
	"strings"
	"testing"
)

// TestPyImports: the module-level imports of a source, in order, with
// the ones a module runs only in functions or as a script left out, and
// nothing read from strings or comments.
func TestPyImports(t *testing.T) {
	src := `"""A module.

import notthis
"""
import os, sys as _sys
import email.message
from . import aliases
from .decoder import (JSONDecoder,  # a comment
    JSONDecodeError as E)
from ..pkg.sub import x, \
    y
from re import *
# import commented
try:
    from _json import make_scanner as c_make_scanner
except ImportError:
    c_make_scanner = None
if sys.platform == "win32":
    import nt
x = '''
from strings import nothing
'''

def f():
    import lazy

class C:
    import inclass

if __name__ == "__main__":
    import mainonly
import last; import alsolast
`
	got := pyImports([]byte(src))
	want := []pyImport{
		{module: "os"}, {module: "sys"},
		{module: "email.message"},
		{level: 1, names: []string{"aliases"}},
		{level: 1, module: "decoder", names: []string{"JSONDecoder", "JSONDecodeError"}},
		{level: 2, module: "pkg.sub", names: []string{"x", "y"}},
		{module: "re"},
		{module: "_json", names: []string{"make_scanner"}},
		{module: "nt"},
		{module: "last"},
	}
	if !reflect.DeepEqual(got, want) {
		t.Errorf("pyImports:\n got %+v\nwant %+v", got, want)
	}
}

func TestPyImportsHostile(t *testing.T) {
	var many strings.Builder
	many.WriteString("from pkg import (")
	for i := range 100000 {
		fmt.Fprintf(&many, "n%d, ", i)
	}
	many.WriteString(")\n")
	if ims := pyImports([]byte(many.String())); len(ims) != 1 || len(ims[0].names) != pyMaxNames {
		t.Errorf("a from-import of 100,000 names gave %d imports with %d names; want 1 with %d", len(ims), len(ims[0].names), pyMaxNames)
	}
	if ims := pyImports([]byte(strings.Repeat("import a\n", 10000))); len(ims) != pyMaxImports {
		t.Errorf("10,000 imports gave %d; want %d", len(ims), pyMaxImports)
	}
	for _, src := range []string{
		"from", "from .", "import", "import ,,,", "from x import", "from \x00 import y",
		"from . import (", "import a.\n", "from .... import ....", "import 9x",
		"from x import (a,\n" + string(make([]byte, 1<<16)),
	} {
		for _, im := range pyImports([]byte(src)) {
			if (im.module != "" && !pyDotted(im.module)) || (im.level == 0 && im.module == "") {
				t.Errorf("%q gave %+v", src, im)
			}
			for _, n := range im.names {
				if !pyIdent(n) {
					t.Errorf("%q gave the name %q", src, n)
				}
			}
		}
	}
}

func TestPySource(t *testing.T) {
	for p, want := range map[string]string{
		"files/lib/python3.11/json/__init__.py":                         "files/lib/python3.11/json/__init__.py",
		"files/lib/python3.11/json/__pycache__/decoder.cpython-311.pyc": "files/lib/python3.11/json/decoder.py",
		"files/lib/python3.11/__pycache__/os.cpython-311.opt-1.pyc":     "files/lib/python3.11/os.py",
		"files/lib/python3.11/json/decoder.pyc":                         "",
		"files/lib/python3.11/lib-dynload/_json.cpython-311-x86_64.so":  "",
		"files/bin/python3": "",
		"files/lib/python3.11/__pycache__/../x.cpython-311.pyc": "",
	} {
		if got := pySource(p); got != want {
			t.Errorf("pySource(%q) = %q, want %q", p, got, want)
		}
	}
	for name, want := range map[string]bool{"python3": true, "python3.11": true, "python2.7": true, "python": false, "python3.": false, "python3.x": false, "pythonic": false} {
		if pyVersionDir(name) != want {
			t.Errorf("pyVersionDir(%q) = %v", name, !want)
		}
	}
}

// FuzzPyImports: any source yields only well-formed imports, in bounded
// number, without a panic; so does any opened path.
func FuzzPyImports(f *testing.F) {
	f.Add([]byte("import os, sys as s\nfrom . import (a,\n b)\ntry:\n    from .x import y\nexcept ImportError:\n    pass\n"), "files/lib/python3.11/json/__pycache__/decoder.cpython-311.pyc")
	f.Add([]byte("\"\"\"doc\nimport x\n'''\n\"\"\"\nfrom ...a.b import \\\n c\n"), "lib/python3/dist-packages/x.py")
	f.Fuzz(func(t *testing.T, src []byte, p string) {
		ims := pyImports(src)
		if len(ims) > pyMaxImports {
			t.Fatalf("%d imports", len(ims))
		}
		for _, im := range ims {
			if (im.module != "" && !pyDotted(im.module)) || (im.level == 0 && im.module == "") || im.level < 0 {
				t.Fatalf("bad import %+v", im)
			}
			for _, n := range im.names {
				if !pyIdent(n) {
					t.Fatalf("bad name %q", n)
				}
			}
		}
		if s := pySource(p); s != "" && !strings.HasSuffix(s, ".py") {
			t.Fatalf("pySource(%q) = %q", p, s)
		}
		packageOf(p, []string{"", ".", "files/lib/python3.11", p})
	})
}
