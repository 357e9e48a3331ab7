# awk functions shared by the reports of bench/run.sh and bench/streams.sh (awk -f bench/stats.awk -f ...).

# Sorts v[1..n] numerically in place (insertion sort: n is the number of rounds).
function sort(v, n,    i, j, x) {
	for (i = 2; i <= n; i++) {
		x = v[i]
		for (j = i - 1; j >= 1 && v[j] > x; j--) v[j+1] = v[j]
		v[j+1] = x
	}
}
function median(v, n) { return n % 2 ? v[(n+1)/2] : (v[n/2] + v[n/2+1]) / 2 }
# vals[key, col] holds the space-separated values of column col over the rounds of key; seen[key] is
# set for every key that ran.
# stat(key, col, fmt, scale): "median (min–max)" of column col over the rounds of key.
function stat(key, col, fmt, scale,    v, n, i) {
	n = split(vals[key, col], v, " ")
	for (i = 1; i <= n; i++) v[i] = v[i] / scale
	sort(v, n)
	return sprintf(fmt " (" fmt "–" fmt ")", median(v, n), v[1], v[n])
}
function med(key, col,    v, n) {
	n = split(vals[key, col], v, " ")
	sort(v, n)
	return median(v, n)
}
# ratio(a, b, col): median of column col for key a over that for key b, "–" when either did not run.
function ratio(a, b, col) {
	if (!(a in seen) || !(b in seen)) return "–"
	return sprintf("%.2f", med(a, col) / med(b, col))
}
# inround[key, round, col] holds column col of key's run in that round, and rounds[round] is set for
# every round (the caller fills both). rratio(a, b, col): the median over the rounds where both ran of
# a's value over b's in the same round, "–" when no round has both. On a noisy machine this is steadier
# than ratio(): a slow spell that lasts a round slows both sides of the ratio.
function rratio(a, b, col,    r, v, n) {
	n = 0
	for (r in rounds) if ((a, r, col) in inround && (b, r, col) in inround) v[++n] = inround[a, r, col] / inround[b, r, col]
	if (n == 0) return "–"
	sort(v, n)
	return sprintf("%.2f", median(v, n))
}
