package main

import (
	"fmt"
	"regexp"
	"slices"
	"strings"
	"testing"
)

// promSelector is a vector selector found in a PromQL expression: the
// metric name and the label names its matchers use.
type promSelector struct {
	Name   string
	Labels []string
}

// promSelectors extracts the vector selectors of a PromQL expression as a
// Grafana dashboard or a Prometheus rule writes it: enough of PromQL to tell
// metric names from functions, aggregations, keywords, label names,
// grouping lists, strings, numbers, durations and Grafana variables
// ($job, ${job}, $__rate_interval). It does not check the syntax (promtool
// does); it errors only on what it cannot skip (an unterminated string,
// bracket or brace).
func promSelectors(expr string) ([]promSelector, error) {
	var out []promSelector
	pending := -1 // index in out of a name that a following {...} belongs to
	i, n := 0, len(expr)
	skipSpace := func(j int) int {
		for j < n && strings.IndexByte(" \t\r\n", expr[j]) >= 0 {
			j++
		}
		return j
	}
	for i < n {
		c := expr[i]
		switch {
		case c == ' ' || c == '\t' || c == '\r' || c == '\n':
			i++
			continue
		case c == '#':
			for i < n && expr[i] != '\n' {
				i++
			}
			continue
		case c == '"' || c == '\'' || c == '`':
			_, j, err := promString(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
		case c == '[':
			j := strings.IndexByte(expr[i:], ']')
			if j < 0 {
				return nil, fmt.Errorf("unterminated [ at %d", i)
			}
			i += j + 1
		case c == '{':
			sel, j, err := promMatchers(expr, i)
			if err != nil {
				return nil, err
			}
			i = j
			if pending >= 0 {
				out[pending].Labels = append(out[pending].Labels, sel.Labels...)
				if sel.Name != "" && sel.Name != out[pending].Name {
					return nil, fmt.Errorf("selector %s names a second metric %q", out[pending].Name, sel.Name)
				}
			} else if sel.Name != "" {
				out = append(out, sel)
			}
		case c == '$':
			i++
			if i < n && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return nil, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += j + 1
			} else {
				for i < n && isIdentByte(expr[i], false) {
					i++
				}
			}
		case c >= '0' && c <= '9' || c == '.' && i+1 < n && expr[i+1] >= '0' && expr[i+1] <= '9':
			for i < n && (isIdentByte(expr[i], false) || expr[i] == '.') {
				i++
			}
		case isIdentByte(c, true):
			j := i
			for j < n && isIdentByte(expr[j], false) {
				j++
			}
			word := expr[i:j]
			next := skipSpace(j)
			i = j
			pending = -1
			kind := promWordKind(word)
			switch {
			case kind == "grouping":
				if next < n && expr[next] == '(' {
					k := strings.IndexByte(expr[next:], ')')
					if k < 0 {
						return nil, fmt.Errorf("unterminated %s( at %d", word, next)
					}
					i = next + k + 1
				}
			case kind != "":
			case next < n && expr[next] == '(':
				// a function call
			default:
				out = append(out, promSelector{Name: word})
				pending = len(out) - 1
			}
			continue
		default:
			i++
		}
		pending = -1
	}
	return out, nil
}

// promMatchers parses {name="v", l=~"x", "utf8.name"} from expr[i] == '{';
// __name__ matchers and a bare string name the metric.
func promMatchers(expr string, i int) (promSelector, int, error) {
	var sel promSelector
	n := len(expr)
	i++
	for {
		for i < n && strings.IndexByte(" \t\r\n,", expr[i]) >= 0 {
			i++
		}
		if i >= n {
			return sel, i, fmt.Errorf("unterminated {")
		}
		if expr[i] == '}' {
			return sel, i + 1, nil
		}
		var label string
		switch {
		case expr[i] == '"' || expr[i] == '\'' || expr[i] == '`':
			s, j, err := promString(expr, i)
			if err != nil {
				return sel, j, err
			}
			label, i = s, j
		case isIdentByte(expr[i], true):
			j := i
			for j < n && isIdentByte(expr[j], false) {
				j++
			}
			label, i = expr[i:j], j
		default:
			return sel, i, fmt.Errorf("unexpected %q in a label matcher at %d", expr[i], i)
		}
		for i < n && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		op := ""
		for i < n && strings.IndexByte("=!~", expr[i]) >= 0 && len(op) < 2 {
			op += string(expr[i])
			i++
		}
		if op == "" { // a bare (quoted) metric name
			sel.Name = label
			continue
		}
		for i < n && strings.IndexByte(" \t\r\n", expr[i]) >= 0 {
			i++
		}
		if i >= n {
			return sel, i, fmt.Errorf("unterminated {")
		}
		var value string
		if expr[i] == '"' || expr[i] == '\'' || expr[i] == '`' {
			s, j, err := promString(expr, i)
			if err != nil {
				return sel, j, err
			}
			value, i = s, j
		} else if expr[i] == '$' { // a Grafana variable as the value
			i++
			if i < n && expr[i] == '{' {
				j := strings.IndexByte(expr[i:], '}')
				if j < 0 {
					return sel, n, fmt.Errorf("unterminated ${ at %d", i)
				}
				i += j + 1
			}
			for i < n && isIdentByte(expr[i], false) {
				i++
			}
		} else {
			return sel, i, fmt.Errorf("label %s: value is not a string at %d", label, i)
		}
		if label == "__name__" {
			if op == "=" {
				sel.Name = value
			}
			continue
		}
		sel.Labels = append(sel.Labels, label)
	}
}

// promString reads a quoted string starting at expr[i]; it returns its
// (unescaped enough) content and the index after it.
func promString(expr string, i int) (string, int, error) {
	q := expr[i]
	var b strings.Builder
	for j := i + 1; j < len(expr); j++ {
		switch {
		case expr[j] == '\\' && q != '`':
			if j+1 < len(expr) {
				j++
				b.WriteByte(expr[j])
			}
		case expr[j] == q:
			return b.String(), j + 1, nil
		default:
			b.WriteByte(expr[j])
		}
	}
	return "", len(expr), fmt.Errorf("unterminated string at %d", i)
}

func isIdentByte(c byte, first bool) bool {
	return c == '_' || c == ':' || c >= 'a' && c <= 'z' || c >= 'A' && c <= 'Z' || !first && c >= '0' && c <= '9'
}

// promWordKind says what a PromQL word is when it is not followed by "(":
// "grouping" (by, on, ... take a label list), "keyword" (operators,
// modifiers, literals) or "aggregation"; "" for anything else.
func promWordKind(w string) string {
	switch strings.ToLower(w) {
	case "by", "without", "on", "ignoring", "group_left", "group_right":
		return "grouping"
	case "and", "or", "unless", "bool", "offset", "atan2", "inf", "nan", "start", "end":
		return "keyword"
	case "sum", "min", "max", "avg", "group", "stddev", "stdvar", "count", "count_values", "bottomk", "topk",
		"quantile", "limitk", "limit_ratio":
		return "aggregation"
	}
	return ""
}

func TestPromSelectors(t *testing.T) {
	for _, tc := range []struct {
		expr string
		want []string // name{label,label}
	}{
		{`up{job="nkbridge"} == 0`, []string{"up{job}"}},
		{`sum by (job, instance) (rate(nkbridge_sip_register_total{job="nkbridge",result="failed"}[5m])) > 0.05`,
			[]string{"nkbridge_sip_register_total{job,result}"}},
		{`sum(rate(a_total{x=~"$job"}[$__rate_interval])) / sum without (le) (b)`, []string{"a_total{x}", "b"}},
		{`histogram_quantile(0.95, sum by (le) (rate(h_bucket{job=~"$job",instance=~"$instance"}[5m])))`, []string{"h_bucket{job,instance}"}},
		{`label_replace(rate(r{code!~"2.."}[1m]), "class", "${1}xx", "code", "([0-9]).*")`, []string{"r{code}"}},
		{`a and on (instance) group_left (x) b offset 5m or c @ start()`, []string{"a", "b", "c"}},
		{`{__name__="via_name", l="1"} + {"utf8.name"}`, []string{"via_name{l}", "utf8.name"}},
		{`max(2 * m{status="draining"} or m{status="overloaded"})`, []string{"m{status}", "m{status}"}},
		{`# comment naming not_a_metric
		  x_total # trailing
		  + 1e3 + 0x1F + 5m + Inf + NaN`, []string{"x_total"}},
		{`rate(s[5m:1m]) unless bool t`, []string{"s", "t"}},
		{`label_values(nkbridge_draining{job=~"$job"}, instance)`, []string{"nkbridge_draining{job}", "instance"}},
	} {
		sels, err := promSelectors(tc.expr)
		if err != nil {
			t.Errorf("%s: %v", tc.expr, err)
			continue
		}
		var got []string
		for _, s := range sels {
			got = append(got, s.String())
		}
		if !slices.Equal(got, tc.want) {
			t.Errorf("%s:\n got %v\nwant %v", tc.expr, got, tc.want)
		}
	}
	for _, bad := range []string{`a{x="1"`, `a{x="1}`, `rate(a[5m)`, `a{x=1}`, `sum by (a`} {
		if _, err := promSelectors(bad); err == nil {
			t.Errorf("%s: no error", bad)
		}
	}
}

func (s promSelector) String() string {
	if len(s.Labels) == 0 {
		return s.Name
	}
	return s.Name + "{" + strings.Join(s.Labels, ",") + "}"
}

var metricNameRe = regexp.MustCompile(`^[a-zA-Z_:][a-zA-Z0-9_:]*$`)

// The extractor never panics and finds only names and labels that occur in
// its input; bare names are valid metric names.
func FuzzPromSelectors(f *testing.F) {
	for _, s := range []string{
		`up{job="nkbridge"} == 0`,
		`sum by (job) (rate(x_total{a=~"b|c", d!="e"}[5m])) / ignoring(f) y offset 1h`,
		`{__name__=~"nkbridge_.*"}`, `{"utf8.name", "l.a"="v"}`, `m{l="\"}"}`, `a[`, `b{`, "c{d='e'}", "`raw`",
		`histogram_quantile(0.9, sum by (le) (rate(h_bucket[$__rate_interval])))`, `${1}xx $job`,
	} {
		f.Add(s)
	}
	f.Fuzz(func(t *testing.T, expr string) {
		sels, err := promSelectors(expr)
		if err != nil {
			return
		}
		for _, s := range sels {
			if s.Name == "" {
				t.Fatalf("empty name from %q", expr)
			}
			if !strings.Contains(expr, s.Name) && !metricNameRe.MatchString(s.Name) {
				// a quoted name may have had escapes removed; it must still be a quoted part of expr
				if !strings.ContainsAny(expr, `"'`+"`") {
					t.Fatalf("name %q not from %q", s.Name, expr)
				}
			}
			for _, l := range s.Labels {
				if !strings.Contains(expr, l) && !strings.ContainsAny(expr, `"'`+"`") {
					t.Fatalf("label %q not from %q", l, expr)
				}
			}
		}
		again, _ := promSelectors(expr)
		if !slices.EqualFunc(sels, again, func(a, b promSelector) bool { return a.String() == b.String() }) {
			t.Fatalf("not deterministic on %q", expr)
		}
	})
}
