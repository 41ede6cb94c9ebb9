//go:build race

package delta

// raceEnabled makes the large-part tests smaller: the race detector slows
// the pure-Go xz codec about fifteen times.
const raceEnabled = true
