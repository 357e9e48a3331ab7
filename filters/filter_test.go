package filters

import (
	"strings"
	"testing"
)

// recorder is a filter that logs its calls and stops the request when told to.
type recorder struct {
	name string
	stop bool
	log  *[]string
}

func (r recorder) OnRequest(x *Exchange) Verdict {
	*r.log = append(*r.log, "req:"+r.name)
	if r.stop {
		x.Reject(429, "stopped by "+r.name)
		return Stop
	}
	return Continue
}

func (r recorder) OnResponse(*Exchange) { *r.log = append(*r.log, "resp:"+r.name) }

func TestChain_RunsRequestInOrderAndResponseInReverseForTheFiltersThatRan(t *testing.T) {
	for _, tc := range []struct {
		desc        string
		stopAt      string
		wantVerdict Verdict
		wantLog     string
	}{
		{"no filter stops", "", Continue, "req:a req:b req:c resp:c resp:b resp:a"},
		{"the middle filter stops", "b", Stop, "req:a req:b resp:b resp:a"},
		{"the first filter stops", "a", Stop, "req:a resp:a"},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var log []string
			var chain Chain
			for _, n := range []string{"a", "b", "c"} {
				chain = append(chain, recorder{name: n, stop: n == tc.stopAt, log: &log})
			}
			x := AcquireExchange(nil)
			defer ReleaseExchange(x)
			ran, v := chain.Request(x)
			chain.Response(x, ran)
			if v != tc.wantVerdict || strings.Join(log, " ") != tc.wantLog {
				t.Errorf("verdict %v, calls %q; want %v, %q", v, strings.Join(log, " "), tc.wantVerdict, tc.wantLog)
			}
			if tc.stopAt != "" && (x.Status != 429 || x.Reason != "stopped by "+tc.stopAt) {
				t.Errorf("rejection = %d %q", x.Status, x.Reason)
			}
		})
	}
}

func TestExchange_ReleasedExchangeComesBackZeroed(t *testing.T) {
	x := AcquireExchange(nil)
	x.Route, x.Status, x.Failed = "r", 503, true
	x.ClientIP = append(x.IPBuf(), "10.0.0.1"...)
	ReleaseExchange(x)
	y := AcquireExchange(nil)
	defer ReleaseExchange(y)
	if y.Route != "" || y.Status != 0 || y.Failed || len(y.ClientIP) != 0 || y.Ctx != nil {
		t.Fatalf("acquired exchange carries state: %+v", y)
	}
}
