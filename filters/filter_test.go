package filters

import (
	"reflect"
	"strings"
	"testing"
)

// step is a filter that logs when it runs before and after the rest of the chain, and rejects the
// request instead of calling the rest when stop is set.
type step struct {
	name string
	stop bool
	log  *[]string
	next Handler
}

func (s step) Wrap(next Handler) Handler { s.next = next; return s }

func (s step) Serve(x *Exchange) {
	*s.log = append(*s.log, "req:"+s.name)
	if s.stop {
		x.Reject(429, "stopped by "+s.name)
	} else {
		s.next.Serve(x)
	}
	*s.log = append(*s.log, "resp:"+s.name)
}

type terminal struct{ log *[]string }

func (t terminal) Serve(*Exchange) { *t.log = append(*t.log, "upstream") }

func TestChain_RunsStepsInOrderAroundTheUpstreamAndStopsAtARejection(t *testing.T) {
	for _, tc := range []struct {
		desc    string
		stopAt  string
		wantLog string
	}{
		{"no step stops", "", "req:a req:b req:c upstream resp:c resp:b resp:a"},
		{"the middle step rejects", "b", "req:a req:b resp:b resp:a"},
		{"the first step rejects", "a", "req:a resp:a"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var log []string
			var fs []Filter
			for _, n := range []string{"a", "b", "c"} {
				fs = append(fs, step{name: n, stop: n == tc.stopAt, log: &log})
			}
			x := AcquireExchange(nil)
			defer ReleaseExchange(x)
			Chain(fs, terminal{&log}).Serve(x)
			if strings.Join(log, " ") != tc.wantLog {
				t.Errorf("calls %q, want %q", strings.Join(log, " "), tc.wantLog)
			}
			if tc.stopAt != "" && (x.Status != 429 || x.Reason != "stopped by "+tc.stopAt || x.Answered()) {
				t.Errorf("rejection = %d %q", x.Status, x.Reason)
			}
		})
	}
}

func TestExchange_ReleaseZeroesItBeforeReuse(t *testing.T) {
	x := AcquireExchange(nil)
	x.Route, x.Status, x.Failed = "r", 503, true
	x.ClientIP = append(x.IPBuf(), "10.0.0.1"...)
	ReleaseExchange(x)
	// Checked on x itself: the pool need not hand the same object back (under -race it often drops it).
	if !reflect.DeepEqual(*x, Exchange{}) {
		t.Fatalf("released exchange still carries state: %+v", x)
	}
}

// configErrorTexts returns the text of each problem a filter constructor reported, in order.
func configErrorTexts(err error) []string {
	var texts []string
	for _, ce := range ConfigErrors(err) {
		texts = append(texts, ce.Error())
	}
	return texts
}
