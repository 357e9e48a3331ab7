module weirbench/cachestore

go 1.26

require (
	github.com/VictoriaMetrics/fastcache v1.13.2
	github.com/dgraph-io/ristretto/v2 v2.4.2
	github.com/maypok86/otter/v2 v2.4.0
)

require (
	github.com/cespare/xxhash/v2 v2.3.0 // indirect
	github.com/dustin/go-humanize v1.0.1 // indirect
	github.com/golang/snappy v1.0.0 // indirect
	golang.org/x/sys v0.36.0 // indirect
)
