package web

import (
	"encoding/json"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"slices"
	"strings"
	"testing"

	"github.com/nkbridge/nkbridge/internal/peers"
)

// tsc returns the TypeScript compiler the root package.json pins
// (node_modules/.bin/tsc), or skips (fails with NKB_REQUIRE_PEERS=1).
func tsc(t *testing.T) string {
	t.Helper()
	return peers.NeedFile(t, filepath.Join(peers.RepoRoot(t), "node_modules", ".bin", "tsc"), "npm ci installs typescript")
}

// The typed example (web/examples/*.ts) compiles with tsc --noEmit against
// the declarations, resolved through the package's own package.json (the
// tsconfig maps @nkbridge/client to web/static). A wrong call in the example
// fails the check (proved by compiling a broken copy).
func TestTypeScriptExample(t *testing.T) {
	bin := tsc(t)
	root := peers.RepoRoot(t)
	out, err := exec.Command(bin, "--noEmit", "-p", filepath.Join(root, "web", "examples")).CombinedOutput()
	if err != nil {
		t.Fatalf("tsc --noEmit -p web/examples: %v\n%s", err, out)
	}

	// The declarations are really used: a misuse is an error.
	dir := t.TempDir()
	bad := "import { NkbClient } from \"@nkbridge/client\";\nexport const p: Promise<number> = new NkbClient().login(\"a\", \"b\");\n"
	if err := os.WriteFile(filepath.Join(dir, "bad.ts"), []byte(bad), 0o644); err != nil {
		t.Fatal(err)
	}
	cfg, err := os.ReadFile(filepath.Join(root, "web", "examples", "tsconfig.json"))
	if err != nil {
		t.Fatal(err)
	}
	static := filepath.Join(root, "web", "static")
	cfgs := strings.Replace(string(cfg), `"../static"`, jsonString(static), 1)
	if err := os.WriteFile(filepath.Join(dir, "tsconfig.json"), []byte(cfgs), 0o644); err != nil {
		t.Fatal(err)
	}
	out, err = exec.Command(bin, "--noEmit", "-p", dir).CombinedOutput()
	if err == nil || !strings.Contains(string(out), "TS2322") {
		t.Fatalf("a wrongly typed use compiled: %v\n%s", err, out)
	}
}

func jsonString(s string) string { b, _ := json.Marshal(s); return string(b) }

// declared parses nkbridge.d.ts: exported names (classes, functions,
// consts; types and interfaces apart), and per class its methods and
// properties.
func declared(t *testing.T, dts string) (values []string, methods, props map[string][]string) {
	t.Helper()
	methods, props = map[string][]string{}, map[string][]string{}
	exportRe := regexp.MustCompile(`^export (?:declare )?(class|function|const|let) (\w+)`)
	memberRe := regexp.MustCompile(`^  (?:readonly )?(\w+)(\??)(<[^(]*>)?(\(|:)`)
	class := ""
	for _, line := range strings.Split(dts, "\n") {
		if m := exportRe.FindStringSubmatch(line); m != nil {
			if !slices.Contains(values, m[2]) {
				values = append(values, m[2])
			}
			if m[1] == "class" {
				class = m[2]
				methods[class], props[class] = []string{}, []string{}
			}
			continue
		}
		if line == "}" {
			class = ""
			continue
		}
		if class == "" {
			continue
		}
		if m := memberRe.FindStringSubmatch(line); m != nil {
			name := m[1]
			switch {
			case name == "constructor" || name == "addEventListener" || name == "removeEventListener":
			case m[4] == "(":
				if !slices.Contains(methods[class], name) {
					methods[class] = append(methods[class], name)
				}
			default:
				props[class] = append(props[class], name)
			}
		}
	}
	slices.Sort(values)
	for c := range methods {
		slices.Sort(methods[c])
		slices.Sort(props[c])
	}
	return values, methods, props
}

// nodeShape is what node sees when it imports nkbridge.js: the exports,
// and per exported class its public prototype methods and accessors and the
// public fields of an instance.
const nodeShape = `
const m = await import(process.argv[1]);
const out = { exports: Object.keys(m).sort(), classes: {} };
const c = new m.NkbClient("ws://127.0.0.1:1/api");
const instances = { NkbClient: c, Invite: new m.Invite(c, { call_id: "x" }), ApiError: new m.ApiError(1, "x") };
for (const [name, obj] of Object.entries(instances)) {
  const proto = m[name].prototype, methods = [], accessors = [];
  for (const k of Object.getOwnPropertyNames(proto)) {
    if (k === "constructor" || k.startsWith("_")) continue;
    const d = Object.getOwnPropertyDescriptor(proto, k);
    (typeof d.value === "function" ? methods : accessors).push(k);
  }
  const fields = Object.keys(obj).filter((k) => !k.startsWith("_"));
  out.classes[name] = { methods: methods.sort(), accessors: accessors.sort(), fields: fields.sort() };
}
console.log(JSON.stringify(out));
`

// Every export of nkbridge.js is declared in nkbridge.d.ts and nothing
// else is; every public method of its classes is declared as a method, and
// every public field and accessor as a property (and the other way round).
func TestDeclarationsMatchModule(t *testing.T) {
	node := peers.Need(t, "node")
	root := peers.RepoRoot(t)
	dts, err := os.ReadFile(filepath.Join(root, "web", "static", "nkbridge.d.ts"))
	if err != nil {
		t.Fatal(err)
	}
	values, methods, props := declared(t, string(dts))
	if len(values) < 5 || len(methods["NkbClient"]) < 20 {
		t.Fatalf("parsed too little from nkbridge.d.ts: %v %v", values, methods)
	}
	out, err := exec.Command(node, "--input-type=module", "-e", nodeShape, "file://"+filepath.Join(root, "web", "static", "nkbridge.js")).CombinedOutput()
	if err != nil {
		t.Fatalf("node: %v\n%s", err, out)
	}
	var got struct {
		Exports []string
		Classes map[string]struct{ Methods, Accessors, Fields []string }
	}
	if err := json.Unmarshal(out, &got); err != nil {
		t.Fatalf("node output %q: %v", out, err)
	}
	if !slices.Equal(got.Exports, values) {
		t.Errorf("nkbridge.js exports %v, nkbridge.d.ts declares %v", got.Exports, values)
	}
	for name, c := range got.Classes {
		if !slices.Equal(c.Methods, methods[name]) {
			t.Errorf("%s: methods in nkbridge.js %v, in nkbridge.d.ts %v", name, c.Methods, methods[name])
		}
		want := slices.Sorted(slices.Values(append(append([]string{}, c.Fields...), c.Accessors...)))
		want = slices.DeleteFunc(want, func(s string) bool { return s == "name" || s == "message" || s == "stack" }) // Error's own
		have := slices.DeleteFunc(slices.Clone(props[name]), func(s string) bool { return s == "name" })
		if !slices.Equal(want, have) {
			t.Errorf("%s: fields and accessors in nkbridge.js %v, properties in nkbridge.d.ts %v", name, want, have)
		}
	}
}

// The package in web/static could be published as it is: npm packs
// exactly the module, its declarations and package.json, and the exports
// point at files that exist.
func TestPackageJSON(t *testing.T) {
	npm := peers.Need(t, "npm")
	dir := filepath.Join(peers.RepoRoot(t), "web", "static")
	b, err := os.ReadFile(filepath.Join(dir, "package.json"))
	if err != nil {
		t.Fatal(err)
	}
	var pkg struct {
		Name, Version, Types, Type, Main, License string
		Private                                   bool
		Exports                                   map[string]json.RawMessage
	}
	if err := json.Unmarshal(b, &pkg); err != nil {
		t.Fatal(err)
	}
	if pkg.Name == "" || !regexp.MustCompile(`^\d+\.\d+\.\d+$`).MatchString(pkg.Version) || pkg.Private || pkg.Type != "module" ||
		pkg.Types != "./nkbridge.d.ts" || pkg.Main != "./nkbridge.js" || pkg.License == "" {
		t.Fatalf("package.json: %+v", pkg)
	}
	var dot struct{ Types, Import, Default string }
	if err := json.Unmarshal(pkg.Exports["."], &dot); err != nil || dot.Types != "./nkbridge.d.ts" || dot.Import != "./nkbridge.js" {
		t.Fatalf(`exports["."] = %s %v`, pkg.Exports["."], err)
	}
	cmd := exec.Command(npm, "pack", "--dry-run", "--json", "--ignore-scripts", "--offline")
	cmd.Dir = dir
	cmd.Env = append(os.Environ(), "npm_config_update_notifier=false", "npm_config_audit=false", "npm_config_fund=false")
	out, err := cmd.Output()
	if err != nil {
		t.Fatalf("npm pack --dry-run: %v\n%s", err, out)
	}
	var packs []struct {
		Name, Version string
		Files         []struct{ Path string }
	}
	if err := json.Unmarshal(out, &packs); err != nil || len(packs) != 1 {
		t.Fatalf("npm pack output %s: %v", out, err)
	}
	var files []string
	for _, f := range packs[0].Files {
		files = append(files, f.Path)
	}
	slices.Sort(files)
	if want := []string{"nkbridge.d.ts", "nkbridge.js", "package.json"}; !slices.Equal(files, want) || packs[0].Name != pkg.Name {
		t.Fatalf("npm would pack %s %v, want %v", packs[0].Name, files, want)
	}
}
