package tracing

import (
	"encoding/hex"
	"strings"
	"testing"
)

func TestBegin_ContinuesAValidParentAndStartsAFreshTraceOtherwise(t *testing.T) {
	const trace, parent = "4bf92f3577b34da6a3ce929d0e0e4736", "00f067aa0ba902b7"
	for _, tc := range []struct {
		desc, header string
		continued    bool
		sampled      bool
	}{
		{"sampled parent", "00-" + trace + "-" + parent + "-01", true, true},
		{"unsampled parent", "00-" + trace + "-" + parent + "-00", true, false},
		{"other flags, sampled bit set", "00-" + trace + "-" + parent + "-03", true, true},
		{"a later version with another field", "01-" + trace + "-" + parent + "-01-what-comes-next", true, true},
		{"a later version, exactly the known fields", "cc-" + trace + "-" + parent + "-01", true, true},
		{"no header", "", false, false},
		{"version 00 with a trailing field", "00-" + trace + "-" + parent + "-01-x", false, false},
		{"version ff", "ff-" + trace + "-" + parent + "-01", false, false},
		{"upper-case hex", "00-" + strings.ToUpper(trace) + "-" + parent + "-01", false, false},
		{"all-zero trace ID", "00-" + strings.Repeat("0", 32) + "-" + parent + "-01", false, false},
		{"all-zero parent ID", "00-" + trace + "-" + strings.Repeat("0", 16) + "-01", false, false},
		{"short trace ID", "00-" + trace[:30] + "-" + parent + "-01", false, false},
		{"not hex", "00-" + trace[:31] + "g-" + parent + "-01", false, false},
		{"a later version running on without a dash", "01-" + trace + "-" + parent + "-01x", false, false},
		{"wrong separators", "00_" + trace + "_" + parent + "_01", false, false},
	} {
		t.Run(tc.desc, func(t *testing.T) {
			var s Span
			// A ratio of 0 samples nothing that starts here: a sampled span came from its parent.
			if got := s.Begin([]byte(tc.header), NewSampler(0)); got != tc.continued {
				t.Fatalf("Begin(%q) continued = %v, want %v", tc.header, got, tc.continued)
			}
			if s.Sampled != tc.sampled {
				t.Errorf("sampled = %v, want %v", s.Sampled, tc.sampled)
			}
			gotTrace, gotParent := hex.EncodeToString(s.TraceID[:]), hex.EncodeToString(s.Parent[:])
			if tc.continued && (gotTrace != trace || gotParent != parent) {
				t.Errorf("trace %s parent %s, want %s and %s", gotTrace, gotParent, trace, parent)
			}
			if !tc.continued && (gotTrace == trace || s.Parent != [8]byte{} || s.TraceID == [16]byte{}) {
				t.Errorf("a fresh trace should have a new non-zero ID and no parent; got trace %s parent %s", gotTrace, gotParent)
			}
			if s.ID == [8]byte{} || s.ID == s.Parent {
				t.Errorf("weir's span ID %x must be new and non-zero", s.ID)
			}
			sent := string(s.AppendTraceparent(nil))
			flags := "-00"
			if tc.sampled {
				flags = "-01"
			}
			want := "00-" + hex.EncodeToString(s.TraceID[:]) + "-" + hex.EncodeToString(s.ID[:]) + flags
			if sent != want || len(sent) != TraceparentLen {
				t.Errorf("traceparent sent upstream = %q, want %q", sent, want)
			}
		})
	}
}

func TestSampler_Ratio(t *testing.T) {
	for _, ratio := range []float64{0, 0.01, 0.25, 0.5, 1} {
		const n = 100000
		sampled := 0
		for range n {
			var s Span
			s.Begin(nil, NewSampler(ratio))
			if s.Sampled {
				sampled++
			}
		}
		got := float64(sampled) / n
		if d := got - ratio; d > 0.01 || d < -0.01 {
			t.Errorf("ratio %g sampled %.4f of fresh traces", ratio, got)
		}
	}
}

func TestSpan_EventsAreKeptOnlyWhenSampledAndBounded(t *testing.T) {
	var unsampled Span
	unsampled.Event(Event{Name: "retry"})
	if len(unsampled.Events()) != 0 {
		t.Fatal("an unsampled span kept an event")
	}
	sampled := Span{Sampled: true}
	for i := range MaxEvents + 2 {
		sampled.Event(Event{Name: "retry", Attempt: i + 1})
	}
	if got := len(sampled.Events()); got != MaxEvents || sampled.lost != 2 {
		t.Fatalf("kept %d events and lost %d; want %d and 2", got, sampled.lost, MaxEvents)
	}
}

func BenchmarkBeginUnsampled(b *testing.B) {
	header := []byte("00-4bf92f3577b34da6a3ce929d0e0e4736-00f067aa0ba902b7-00")
	var buf [TraceparentLen]byte
	b.ReportAllocs()
	for b.Loop() {
		var s Span
		s.Begin(header, NewSampler(0.01))
		_ = s.AppendTraceparent(buf[:0])
	}
}
