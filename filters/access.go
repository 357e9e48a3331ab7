package filters

import (
	"errors"
	"fmt"
	"net/netip"

	"github.com/valyala/fasthttp"
)

// AccessConfig is the `access` filter: allow and deny lists of client networks. The client is the
// address weir works out for the request (the peer, or what a trusted proxy reports in
// X-Forwarded-For), the one in the access log.
type AccessConfig struct {
	// Allow, when not empty, admits only clients inside one of these networks (CIDR, or a bare
	// address for one host).
	Allow []string `yaml:"allow"`
	// Deny refuses clients inside one of these networks, even when Allow admits them.
	Deny []string `yaml:"deny"`
}

// Access is a compiled access filter. The lists are scanned in order: they are meant for a handful
// of networks (office ranges, a monitoring host), not for blocklists of thousands.
type Access struct {
	allow, deny []netip.Prefix
}

// NewAccess validates cfg and builds the filter.
func NewAccess(cfg AccessConfig, _ Env) (*Access, error) {
	var errs []error
	parse := func(field string, list []string) []netip.Prefix {
		out := make([]netip.Prefix, 0, len(list))
		for i, s := range list {
			p, err := netip.ParsePrefix(s)
			if err != nil {
				a, aerr := netip.ParseAddr(s)
				if aerr != nil {
					errs = append(errs, fieldErr(fmt.Sprintf("%s[%d]", field, i),
						"%q is neither a network (10.0.0.0/8, 2001:db8::/32) nor an address", s))
					continue
				}
				p = netip.PrefixFrom(a, a.BitLen())
			}
			if p != p.Masked() {
				errs = append(errs, fieldErr(fmt.Sprintf("%s[%d]", field, i),
					"%s has host bits set; the network is %s", s, p.Masked()))
				continue
			}
			out = append(out, p)
		}
		return out
	}
	a := &Access{allow: parse("allow", cfg.Allow), deny: parse("deny", cfg.Deny)}
	if len(cfg.Allow) == 0 && len(cfg.Deny) == 0 {
		errs = append(errs, fieldErr("allow", "list at least one network in allow or deny"))
	}
	if len(errs) > 0 {
		return nil, errors.Join(errs...)
	}
	return a, nil
}

// Wrap implements Filter.
func (a *Access) Wrap(next Handler) Handler { return &accessStep{Access: a, next: next} }

type accessStep struct {
	*Access
	next Handler
}

func (s *accessStep) Serve(x *Exchange) {
	// An IPv4 client on a dual-stack socket arrives as ::ffff:a.b.c.d; the lists say a.b.c.d.
	client := x.Client.Unmap()
	if contains(s.deny, client) || (len(s.allow) > 0 && !contains(s.allow, client)) {
		x.Reject(fasthttp.StatusForbidden, "client address not allowed")
		return
	}
	s.next.Serve(x)
}

func contains(list []netip.Prefix, a netip.Addr) bool {
	for _, p := range list {
		if p.Contains(a) {
			return true
		}
	}
	return false
}
