package fetchtest

import (
	"fmt"
	"regexp"
	"strings"
)

// pattern matches URL paths. The syntax, shared by Rule.Paths,
// Options.FailFirstPaths and Server.Count:
//
//   - "" matches every path;
//   - a pattern holding '*', '?' or '[' is a glob: '*' matches within one
//     path segment, '**' matches across segments, '?' matches one
//     character other than '/', '[...]' is a class as in path.Match and
//     '\' quotes the next character;
//   - a pattern ending in '/' matches every path under it;
//   - anything else matches that path exactly.
//
// Patterns are rooted: a missing leading '/' is implied, so "summary"
// and "/summary" mean the same.
type pattern struct {
	src    string
	all    bool
	exact  string
	prefix string
	re     *regexp.Regexp
}

func compilePattern(s string) (*pattern, error) {
	p := &pattern{src: s}
	if s == "" {
		p.all = true
		return p, nil
	}
	if !strings.HasPrefix(s, "/") {
		s = "/" + s
	}
	switch {
	case strings.ContainsAny(s, `*?[\`):
		re, err := globRegexp(s)
		if err != nil {
			return nil, fmt.Errorf("pattern %q: %w", p.src, err)
		}
		p.re = re
	case strings.HasSuffix(s, "/"):
		p.prefix = s
	default:
		p.exact = s
	}
	return p, nil
}

// mustPattern is compilePattern for patterns handed to query methods,
// where a bad pattern is a bug in the caller.
func mustPattern(s string) *pattern {
	p, err := compilePattern(s)
	if err != nil {
		panic("fetchtest: " + err.Error())
	}
	return p
}

func (p *pattern) match(path string) bool {
	switch {
	case p == nil || p.all:
		return true
	case p.re != nil:
		return p.re.MatchString(path)
	case p.prefix != "":
		return strings.HasPrefix(path, p.prefix)
	default:
		return path == p.exact
	}
}

// globRegexp translates a glob into an anchored regular expression.
func globRegexp(glob string) (*regexp.Regexp, error) {
	var b strings.Builder
	b.WriteString(`^`)
	for i := 0; i < len(glob); i++ {
		c := glob[i]
		switch c {
		case '*':
			if i+1 < len(glob) && glob[i+1] == '*' {
				b.WriteString(`.*`)
				i++
			} else {
				b.WriteString(`[^/]*`)
			}
		case '?':
			b.WriteString(`[^/]`)
		case '\\':
			if i+1 == len(glob) {
				return nil, fmt.Errorf("trailing backslash")
			}
			i++
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		case '[':
			end, class, err := globClass(glob, i)
			if err != nil {
				return nil, err
			}
			b.WriteString(class)
			i = end
		default:
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
	}
	b.WriteString(`$`)
	return regexp.Compile(b.String())
}

// globClass translates the class that starts at glob[start] == '[' and
// returns the index of its closing ']'. Classes never match '/'.
func globClass(glob string, start int) (int, string, error) {
	var b strings.Builder
	b.WriteString(`[`)
	i := start + 1
	if i < len(glob) && (glob[i] == '^' || glob[i] == '!') {
		b.WriteString(`^/`)
		i++
	}
	empty := true
	for ; i < len(glob); i++ {
		c := glob[i]
		switch {
		case c == ']' && !empty:
			b.WriteString(`]`)
			if !strings.HasPrefix(b.String(), `[^`) {
				// A positive class must still refuse '/': intersect by
				// lookahead is not available in RE2, so refuse classes
				// that name it instead.
				if strings.Contains(glob[start:i], "/") {
					return 0, "", fmt.Errorf("class %s names '/'", glob[start:i+1])
				}
			}
			return i, b.String(), nil
		case c == '\\':
			if i+1 == len(glob) {
				return 0, "", fmt.Errorf("trailing backslash")
			}
			i++
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		case c == '-' && !empty && i+1 < len(glob) && glob[i+1] != ']':
			b.WriteString(`-`)
		default:
			b.WriteString(regexp.QuoteMeta(glob[i : i+1]))
		}
		empty = false
	}
	return 0, "", fmt.Errorf("unterminated class in %q", glob)
}
