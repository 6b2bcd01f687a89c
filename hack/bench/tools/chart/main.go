// Command chart draws bench/results/throughput.png from the JSON the bench
// writes: three horizontal bar panels, one bar per case: requests/s, p99
// latency and the server's CPU time per request. Pure Go: image/png and the
// basicfont bitmap face.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"image"
	"image/color"
	"image/draw"
	"image/png"
	"log"
	"math"
	"os"

	"golang.org/x/image/font"
	"golang.org/x/image/font/basicfont"
	"golang.org/x/image/math/fixed"
)

type input struct {
	Title    string `json:"title"`
	Subtitle string `json:"subtitle"`
	Bars     []bar  `json:"bars"`
}

type bar struct {
	Label string  `json:"label"`
	Group string  `json:"group"`
	RPS   float64 `json:"rps"`
	P99US float64 `json:"p99_us"`
	CPUUS float64 `json:"cpu_us"`
	Note  string  `json:"note"`
}

var (
	white  = color.RGBA{255, 255, 255, 255}
	black  = color.RGBA{20, 20, 20, 255}
	grey   = color.RGBA{110, 110, 110, 255}
	grid   = color.RGBA{225, 225, 225, 255}
	groups = map[string]color.RGBA{
		"ceiling":       {150, 150, 150, 255},
		"registry-auth": {45, 110, 190, 255},
		"oauth2-proxy":  {230, 130, 40, 255},
	}
)

const (
	width    = 1100
	left     = 190 // label column
	right    = 150 // value column
	rowH     = 24
	barH     = 16
	panelGap = 50
)

func main() {
	in := flag.String("in", "", "input JSON")
	out := flag.String("out", "throughput.png", "output PNG")
	flag.Parse()
	b, err := os.ReadFile(*in)
	if err != nil {
		log.Fatal(err)
	}
	var data input
	if err := json.Unmarshal(b, &data); err != nil {
		log.Fatal(err)
	}
	n := len(data.Bars)
	panelH := 30 + n*rowH + 20
	height := 70 + 3*panelH + 2*panelGap + 40
	img := image.NewRGBA(image.Rect(0, 0, width, height))
	draw.Draw(img, img.Bounds(), image.NewUniform(white), image.Point{}, draw.Src)

	text(img, 20, 24, data.Title, black)
	text(img, 20, 44, data.Subtitle, grey)

	y := 70
	panel(img, y, "requests/s (higher is better)", data.Bars, func(b bar) float64 { return b.RPS },
		func(v float64) string { return fmt.Sprintf("%.0f", v) },
		func(b bar) string { return fmt.Sprintf("%.0f  %s", b.RPS, b.Note) })
	y += panelH + panelGap
	panel(img, y, "p99 latency, ms (lower is better)", data.Bars, func(b bar) float64 { return b.P99US / 1000 },
		func(v float64) string { return trimFloat(v) },
		func(b bar) string { return fmt.Sprintf("%.2f ms", b.P99US/1000) })
	y += panelH + panelGap
	panel(img, y, "server CPU time per request, microseconds (lower is better)", data.Bars, func(b bar) float64 { return b.CPUUS },
		func(v float64) string { return trimFloat(v) },
		func(b bar) string { return fmt.Sprintf("%.1f us", b.CPUUS) })

	// Legend.
	lx, ly := 20, height-20
	for _, g := range []string{"ceiling", "registry-auth", "oauth2-proxy"} {
		fill(img, lx, ly-10, lx+12, ly+2, groups[g])
		text(img, lx+18, ly, g, black)
		lx += 40 + 7*len(g)
	}

	f, err := os.Create(*out)
	if err != nil {
		log.Fatal(err)
	}
	if err := png.Encode(f, img); err != nil {
		log.Fatal(err)
	}
	if err := f.Close(); err != nil {
		log.Fatal(err)
	}
}

func panel(img *image.RGBA, top int, title string, bars []bar, value func(bar) float64, tick func(float64) string, label func(bar) string) {
	text(img, 20, top+14, title, black)
	maxV := 0.0
	for _, b := range bars {
		maxV = math.Max(maxV, value(b))
	}
	step := niceStep(maxV / 5)
	axisMax := math.Ceil(maxV/step) * step
	if axisMax == 0 {
		axisMax = 1
	}
	x0, x1 := left, width-right
	y0 := top + 30
	y1 := y0 + len(bars)*rowH
	scale := func(v float64) int { return x0 + int(float64(x1-x0)*v/axisMax) }
	for v := 0.0; v <= axisMax+step/2; v += step {
		x := scale(v)
		fill(img, x, y0-4, x+1, y1, grid)
		s := tick(v)
		text(img, x-3*len(s), y1+14, s, grey)
	}
	for i, b := range bars {
		y := y0 + i*rowH
		text(img, 20, y+barH-3, b.Label, black)
		c, ok := groups[b.Group]
		if !ok {
			c = grey
		}
		fill(img, x0, y+2, max(scale(value(b)), x0+1), y+2+barH, c)
		text(img, max(scale(value(b)), x0+1)+6, y+barH-3, label(b), black)
	}
	fill(img, x0, y0-4, x0+1, y1, black)
}

// niceStep rounds x up to 1, 2 or 5 times a power of ten.
func niceStep(x float64) float64 {
	if x <= 0 {
		return 1
	}
	p := math.Pow(10, math.Floor(math.Log10(x)))
	for _, m := range []float64{1, 2, 5, 10} {
		if m*p >= x {
			return m * p
		}
	}
	return 10 * p
}

func trimFloat(v float64) string {
	s := fmt.Sprintf("%.3f", v)
	for len(s) > 1 && s[len(s)-1] == '0' {
		s = s[:len(s)-1]
	}
	if s[len(s)-1] == '.' {
		s = s[:len(s)-1]
	}
	return s
}

func fill(img *image.RGBA, x0, y0, x1, y1 int, c color.RGBA) {
	draw.Draw(img, image.Rect(x0, y0, x1, y1), image.NewUniform(c), image.Point{}, draw.Src)
}

func text(img *image.RGBA, x, y int, s string, c color.RGBA) {
	d := &font.Drawer{Dst: img, Src: image.NewUniform(c), Face: basicfont.Face7x13, Dot: fixed.P(x, y)}
	d.DrawString(s)
}
