package filters

import (
	"fmt"
	"strconv"
	"strings"
)

// Size is a byte count written as an integer or with a KiB/MiB/GiB (or KB/MB/GB) suffix.
type Size int64

// ParseSize reads "4096", "16KiB", "4MiB", "1GiB"; KB/MB/GB are read as the same powers of 1024.
func ParseSize(s string) (Size, error) {
	num := strings.TrimSpace(s)
	mult := int64(1)
	for _, u := range []struct {
		suffix string
		mult   int64
	}{{"KiB", 1 << 10}, {"MiB", 1 << 20}, {"GiB", 1 << 30}, {"KB", 1 << 10}, {"MB", 1 << 20}, {"GB", 1 << 30}, {"B", 1}} {
		if rest, ok := strings.CutSuffix(num, u.suffix); ok {
			num, mult = strings.TrimSpace(rest), u.mult
			break
		}
	}
	n, err := strconv.ParseInt(num, 10, 64)
	if err != nil || num[0] < '0' || num[0] > '9' || n > (1<<62)/mult {
		return 0, fmt.Errorf("invalid size %q; write a whole number of bytes or use KiB, MiB or GiB, like \"16KiB\"", s)
	}
	return Size(n * mult), nil
}
