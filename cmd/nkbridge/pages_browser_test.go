package main

import (
	"context"
	"fmt"
	"math"
	"path/filepath"
	"strings"
	"testing"
	"time"

	"github.com/nkbridge/nkbridge/internal/browsertest"
)

// openPage opens path of the daemon's demo pages in browser b (one browser serves several
// pages: the pages make their own test tones).
func openPage(ctx context.Context, t *testing.T, b *browsertest.Browser, d *daemon, path, name, ready string) *demoPage {
	t.Helper()
	p := b.NewPage(ctx, "http://"+d.addr+"/demo/"+path)
	dp := &demoPage{t: t, name: name, p: p, ctx: ctx}
	dp.wait(ready, name+" page loaded")
	return dp
}

// loginAs logs a page in through its login bar; tone > 0 picks the page's test tone source.
func (d *demoPage) loginAs(user, password string, tone float64) {
	d.t.Helper()
	d.set("user", user)
	d.set("password", password)
	if tone > 0 {
		d.set("source", "tone")
		d.set("tone-hz", fmt.Sprint(tone))
	}
	d.click("#login")
	d.wait(`document.getElementById("conn-status").textContent === "logged in as `+user+`"`, "logged in")
}

// hearsIn measures the stream the expression js gives (in the page) and reports what is
// wrong: want tones under 20 dB above every notWant tone, or a dominant frequency elsewhere.
func (d *demoPage) hearsIn(js string, want, notWant []float64) string {
	d.t.Helper()
	var a demoAudio
	freqs := append(append([]float64{}, want...), notWant...)
	d.eval(fmt.Sprintf(`nkb.measureAudio(%s, {ms: 1200, freqs: %s})`, js, floats(freqs)), &a)
	var bad []string
	for _, w := range want {
		for _, n := range notWant {
			if a.Levels[fmt.Sprint(w)]-a.Levels[fmt.Sprint(n)] < 20 {
				bad = append(bad, fmt.Sprintf("%.0f Hz not 20 dB over %.0f Hz", w, n))
			}
		}
	}
	if len(want) == 1 && math.Abs(a.DominantHz-want[0]) > 2*a.BinHz {
		bad = append(bad, fmt.Sprintf("dominant %.0f Hz", a.DominantHz))
	}
	if len(bad) > 0 {
		return fmt.Sprintf("%s (levels %v)", strings.Join(bad, ", "), a.Levels)
	}
	return ""
}

// hearsUntil waits (bounded) until the page hears want and not notWant in js's stream.
func (d *demoPage) hearsUntil(js string, want, notWant []float64, what string) {
	d.t.Helper()
	deadline := time.Now().Add(15 * time.Second)
	for {
		p := d.hearsIn(js, want, notWant)
		if p == "" {
			return
		}
		if time.Now().After(deadline) {
			d.fail("%s: %s", what, p)
		}
	}
}

func floats(fs []float64) string {
	s := make([]string, len(fs))
	for i, f := range fs {
		s[i] = fmt.Sprint(f)
	}
	return "[" + strings.Join(s, ",") + "]"
}

type roomStats struct {
	Tiles []struct {
		User          string `json:"user"`
		FramesDecoded int    `json:"framesDecoded"`
		Shown         bool   `json:"shown"`
	} `json:"tiles"`
	Members []struct {
		User    string `json:"user"`
		Talking bool   `json:"talking"`
	} `json:"members"`
}

// The conference room page, three participants in one Chromium (page tones 500, 800 and
// 1200 Hz, the fake camera): each page shows the other two cameras with decoded frames,
// lists the three participants with talking indicators, and hears the other two tones in the
// mcu mix but not its own. Muting one participant removes its tone from the others' mix and
// its talking indicator; one leaving drops it from the others' list and grid.
func TestRoomPageBrowser(t *testing.T) {
	if testing.Short() {
		t.Skip("builds the binary and runs Chromium")
	}
	ctx, cancel := context.WithTimeout(context.Background(), 4*time.Minute)
	defer cancel()
	d := startBinary(t)
	b := browsertest.Launch(t, browsertest.Options{LoopbackPC: true})
	users := []string{"ann", "ben", "cat"}
	tones := []float64{500, 800, 1200}
	pages := make([]*demoPage, 3)
	for i, u := range users {
		pages[i] = openPage(ctx, t, b, d, "room.html", u, `window.room !== undefined`)
		pages[i].loginAs(u, "any", tones[i])
		pages[i].set("room-name", "standup")
		pages[i].click("#join")
		pages[i].wait(`document.getElementById("room-status").textContent === "in room standup"`, "joined")
	}
	// Everyone lists everyone, and sees the two other cameras play.
	for i, p := range pages {
		p.wait(`document.querySelectorAll("#members li").length === 3 && document.getElementById("member-count").textContent === "3"`, "three participants listed")
		p.wait(`room.stats().then((s) => s.tiles.length === 2 && s.tiles.every((t) => t.framesDecoded > 5 && t.shown))`, "two video tiles with frames")
		var s roomStats
		p.eval(`room.stats()`, &s)
		var names []string
		for _, m := range s.Members {
			names = append(names, m.User)
		}
		if strings.Join(names, ",") != "ann,ben,cat" {
			p.fail("participants %v", names)
		}
		var others []float64
		for j, f := range tones {
			if j != i {
				others = append(others, f)
			}
		}
		// The mix: the other two tones, not our own.
		p.hearsUntil(`room.mcu.remote`, others, []float64{tones[i]}, "mcu mix")
		p.wait(`Number(document.getElementById("room-level").value) > 0.05`, "room level meter moving")
	}
	// Talking indicators: a steady tone is talking.
	ann := pages[0]
	ann.wait(`[...document.querySelectorAll("#members li")].filter((li) => li.classList.contains("talking")).length >= 2`, "talking indicators on")
	if err := ann.p.Screenshot(ctx, filepath.Join(browsertest.ArtifactDir(t), "room.png")); err != nil {
		t.Fatal(err)
	}

	// Ben mutes: ann hears cat only, and ben's indicator goes off.
	pages[1].click("#mute")
	pages[1].wait(`room.muted && document.getElementById("mute").textContent === "Unmute"`, "muted")
	ann.hearsUntil(`room.mcu.remote`, []float64{1200}, []float64{800, 500}, "ben muted")
	ann.wait(`!document.querySelector('#members li[data-user="ben"]').classList.contains("talking")`, "ben's talking indicator off")
	pages[1].click("#mute")
	ann.hearsUntil(`room.mcu.remote`, []float64{800, 1200}, []float64{500}, "ben unmuted")

	// Cat leaves: the others' lists and grids drop her.
	pages[2].click("#leave")
	pages[2].wait(`room.mcu === null && document.querySelectorAll("#members li").length === 0`, "cat left")
	for _, p := range pages[:2] {
		p.wait(`document.querySelectorAll("#members li").length === 2 && !document.querySelector('#members li[data-user="cat"]')`, "cat gone from the list")
		p.wait(`room.stats().then((s) => s.tiles.length === 1 && document.querySelectorAll("#grid figure:not([hidden])").length === 2)`, "cat's tile gone")
	}
	ann.hearsUntil(`room.mcu.remote`, []float64{800}, []float64{1200, 500}, "after cat left")
	for _, p := range pages {
		if s := p.text("room-error"); s != "" {
			p.fail("error shown: %s", s)
		}
	}
}
