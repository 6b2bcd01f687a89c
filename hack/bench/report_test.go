package main

import (
	"math"
	"strings"
	"testing"
)

func wr(round, seq int, rps float64) wrkResult {
	// RPS() is Requests over DurationUS: one second.
	return wrkResult{Round: round, Seq: seq, Requests: int64(rps), DurationUS: 1e6}
}

func TestPairedRoundsUsesTheRunsNextToEachOther(t *testing.T) {
	// One round: ceiling 100, case 90, ceiling 80, other 10, ceiling 20.
	// The case's neighbours average 90 (ratio 1); the round's ceiling runs
	// average 66.7 (ratio 1.35).
	ceiling := []wrkResult{wr(1, 0, 100), wr(1, 2, 80), wr(1, 4, 20)}
	cs := []wrkResult{wr(1, 1, 90)}
	if got := pairedRounds(cs, ceiling, rps); math.Abs(got-1) > 1e-9 {
		t.Errorf("case vs ceiling = %v, want 1 (90 / mean of 100 and 80)", got)
	}
	// The median over rounds: ratios 1, 0.9 (45 / 50) and 0.5 (100 / 200).
	ceiling = append(ceiling, wr(2, 0, 50), wr(2, 2, 50), wr(3, 0, 200), wr(3, 2, 200))
	cs = append(cs, wr(2, 1, 45), wr(3, 1, 100))
	if got := pairedRounds(cs, ceiling, rps); math.Abs(got-0.9) > 1e-9 {
		t.Errorf("median over rounds = %v, want 0.9", got)
	}
	// Runs that are not neighbours are compared within their round (the
	// scale phase: every Seq is 0).
	other := []wrkResult{wr(1, 3, 10), wr(2, 0, 5)}
	if got := pairedRounds(cs[:2], other, rps); math.Abs(got-9) > 1e-9 {
		t.Errorf("case vs other = %v, want 9 (90/10 and 45/5)", got)
	}
	// A round the reference did not run in is left out.
	if got := pairedRounds([]wrkResult{wr(4, 1, 1)}, ceiling, rps); got != 0 {
		t.Errorf("no reference: %v, want 0", got)
	}
}

func TestPairedRatioOfACaseWithItself(t *testing.T) {
	c := &tpCase{Rounds: []wrkResult{wr(1, 0, 100), wr(1, 2, 50)}}
	if got := pairedRatio(c, c, rps); got != 1 {
		t.Errorf("ceiling vs itself = %v, want 1", got)
	}
}

func TestRoundsTableSummarisesRepeatedRuns(t *testing.T) {
	var b strings.Builder
	writeRoundsTable(&b, "case", "---", 2, []roundsRow{
		{"ceiling", []wrkResult{wr(1, 0, 100), wr(1, 2, 80), wr(1, 4, 60), wr(2, 0, 50)}},
		{"static_token", []wrkResult{wr(1, 1, 90)}},
	})
	out := b.String()
	for _, want := range []string{"| ceiling | 80, 0 (3 runs, 60–100) | 50, 0 |", "| static_token | 90, 0 | – |"} {
		if !strings.Contains(out, want) {
			t.Errorf("table lacks %q:\n%s", want, out)
		}
	}
}
