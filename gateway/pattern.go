package gateway

import (
	"fmt"
	"regexp"
	"strings"
)

// checkPattern validates a route path pattern before it reaches fasthttp/router, which panics on some
// mistakes (caught in routeTable.add) but silently takes others literally: an unclosed "{" becomes
// part of a static path that no request can match. It returns the pattern's parameter names.
func checkPattern(p string) ([]string, error) {
	if !strings.HasPrefix(p, "/") {
		return nil, fmt.Errorf("path pattern %q must start with /", p)
	}
	// Requests are routed on their normalized path, so these could never match.
	if strings.Contains(p, "//") || strings.Contains(p+"/", "/./") || strings.Contains(p+"/", "/../") {
		return nil, fmt.Errorf("path pattern %q has an empty, . or .. segment; requests are matched after normalization, so it could never match", p)
	}
	var names []string
	for i := 0; i < len(p); i++ {
		switch p[i] {
		case '}':
			return nil, fmt.Errorf("path pattern %q has a } without a matching {", p)
		case '{':
		default:
			continue
		}
		end := closingBrace(p, i)
		if end < 0 {
			return nil, fmt.Errorf("path pattern %q has a { without a matching }", p)
		}
		param := p[i+1 : end]
		name, spec, hasSpec := strings.Cut(param, ":")
		optional := !hasSpec && strings.HasSuffix(name, "?")
		name = strings.TrimSuffix(name, "?")
		if !validParamName(name) {
			return nil, fmt.Errorf("path pattern %q: parameter name %q must be letters, digits and _, not starting with a digit", p, name)
		}
		for _, n := range names {
			if n == name {
				return nil, fmt.Errorf("path pattern %q uses parameter {%s} twice", p, name)
			}
		}
		names = append(names, name)
		last := end == len(p)-1
		switch {
		case optional && !last:
			return nil, fmt.Errorf("path pattern %q: optional parameter {%s?} must end the pattern", p, name)
		case hasSpec && spec == "*" && (!last || p[i-1] != '/'):
			return nil, fmt.Errorf("path pattern %q: catch-all {%s:*} must be a whole last segment", p, name)
		case hasSpec && spec == "":
			return nil, fmt.Errorf("path pattern %q: parameter {%s:} has an empty regular expression", p, name)
		case hasSpec && spec != "*":
			if _, err := regexp.Compile(spec); err != nil {
				return nil, fmt.Errorf("path pattern %q: parameter {%s} has an invalid regular expression: %v", p, name, err)
			}
		}
		i = end
	}
	return names, nil
}

// closingBrace finds the } closing the { at p[open], letting a regular expression after ":" contain
// balanced braces of its own ({n:[0-9]{3}}), as fasthttp/router does.
func closingBrace(p string, open int) int {
	depth, inRegex := 0, false
	for j := open + 1; j < len(p); j++ {
		switch p[j] {
		case ':':
			inRegex = true
		case '{':
			if !inRegex {
				return -1
			}
			depth++
		case '}':
			if depth == 0 {
				return j
			}
			depth--
		}
	}
	return -1
}

func validParamName(s string) bool {
	if s == "" || s[0] >= '0' && s[0] <= '9' {
		return false
	}
	for i := 0; i < len(s); i++ {
		c := s[i]
		if !(c == '_' || 'a' <= c && c <= 'z' || 'A' <= c && c <= 'Z' || '0' <= c && c <= '9') {
			return false
		}
	}
	return true
}
