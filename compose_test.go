package chatgate_test

// compose.yaml and the Dockerfile cannot be run here (no Docker engine), so
// this test checks what can be checked without one: docker-compose accepts
// the file, the topology is the one SPEC §3 describes, every CHATGATE_*
// variable it sets is a flag of cmd/chatgate (an unknown variable is
// silently ignored by the binary), and the Dockerfile builds cmd/chatgate.

import (
	"bytes"
	"fmt"
	"go/ast"
	"go/parser"
	"go/token"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strconv"
	"strings"
	"testing"

	"go.yaml.in/yaml/v3"
)

type composeFile struct {
	Services map[string]composeService `yaml:"services"`
	Volumes  map[string]any            `yaml:"volumes"`
}

type composeService struct {
	Image       string                    `yaml:"image"`
	Build       any                       `yaml:"build"`
	Environment map[string]string         `yaml:"environment"`
	Ports       []any                     `yaml:"ports"`
	DependsOn   map[string]map[string]any `yaml:"depends_on"`
	Restart     string                    `yaml:"restart"`
	Healthcheck struct {
		Test []string `yaml:"test"`
	} `yaml:"healthcheck"`
	Volumes []string `yaml:"volumes"`
}

// dockerCompose runs docker-compose on compose.yaml and returns its stdout;
// anything on stderr (warnings such as an unset variable) fails the test.
func dockerCompose(t *testing.T, args ...string) []byte {
	t.Helper()
	bin, err := exec.LookPath("docker-compose")
	if err != nil {
		t.Fatalf("docker-compose not found (run scripts/install-deps, which installs Debian's docker-compose): %v", err)
	}
	cmd := exec.Command(bin, append([]string{"--project-directory", ".", "-f", "compose.yaml"}, args...)...)
	var stdout, stderr bytes.Buffer
	cmd.Stdout, cmd.Stderr = &stdout, &stderr
	if err := cmd.Run(); err != nil {
		t.Fatalf("docker-compose %s: %v\n%s", strings.Join(args, " "), err, stderr.String())
	}
	if s := strings.TrimSpace(stderr.String()); s != "" {
		t.Fatalf("docker-compose %s warned:\n%s", strings.Join(args, " "), s)
	}
	return stdout.Bytes()
}

func TestComposeConfig(t *testing.T) {
	if out := dockerCompose(t, "config", "-q"); len(bytes.TrimSpace(out)) != 0 {
		t.Fatalf("docker-compose config -q printed %q", out)
	}
	var cf composeFile
	if err := yaml.Unmarshal(dockerCompose(t, "config"), &cf); err != nil {
		t.Fatalf("parse docker-compose config output: %v", err)
	}

	for _, name := range []string{"consul", "nats", "postgres"} {
		s, ok := cf.Services[name]
		if !ok {
			t.Errorf("no service %q", name)
			continue
		}
		if len(s.Healthcheck.Test) == 0 {
			t.Errorf("service %s has no health check", name)
		}
	}
	if img := cf.Services["consul"].Image; !strings.HasPrefix(img, "hashicorp/consul:1.14") {
		t.Errorf("consul image %q, want hashicorp/consul:1.14", img)
	}
	if img := cf.Services["nats"].Image; !strings.HasPrefix(img, "nats:2.10") {
		t.Errorf("nats image %q, want nats:2.10", img)
	}
	pg := cf.Services["postgres"]
	if !strings.HasPrefix(pg.Image, "postgres:15") {
		t.Errorf("postgres image %q, want postgres:15", pg.Image)
	}
	if pg.Environment["POSTGRES_PASSWORD"] == "" {
		t.Error("postgres has no POSTGRES_PASSWORD")
	}
	if !hasVolumeAt(pg.Volumes, "/var/lib/postgresql/data") {
		t.Errorf("postgres keeps its data in no volume: %v", pg.Volumes)
	}

	zones := map[string]int{}
	for i := 1; i <= 3; i++ {
		name := fmt.Sprintf("chatgate-%d", i)
		s, ok := cf.Services[name]
		if !ok {
			t.Errorf("no service %q", name)
			continue
		}
		if s.Build == nil {
			t.Errorf("%s is not built from the Dockerfile", name)
		}
		env := s.Environment
		want := map[string]string{
			"CHATGATE_ADDR":       ":8080",
			"CHATGATE_BUS":        "nats://nats:4222",
			"CHATGATE_CONSUL":     "consul:8500",
			"CHATGATE_NODE_ID":    "auto",
			"CHATGATE_PUBLIC_URL": fmt.Sprintf("http://localhost:%d", 8080+i),
			"CHATGATE_CHECK_URL":  fmt.Sprintf("http://%s:8080/readyz", name),
		}
		for k, v := range want {
			if env[k] != v {
				t.Errorf("%s: %s=%q, want %q", name, k, env[k], v)
			}
		}
		if st := env["CHATGATE_STORE"]; !strings.HasPrefix(st, "postgres://") || !strings.Contains(st, "@postgres:5432/") {
			t.Errorf("%s: CHATGATE_STORE=%q, want postgres://…@postgres:5432/…", name, st)
		}
		if env["CHATGATE_ZONE"] == "" {
			t.Errorf("%s: no CHATGATE_ZONE", name)
		}
		zones[env["CHATGATE_ZONE"]]++
		if !publishes(s.Ports, 8080+i, 8080) {
			t.Errorf("%s: ports %v, want %d:8080", name, s.Ports, 8080+i)
		}
		for _, dep := range []string{"consul", "nats", "postgres"} {
			if c := s.DependsOn[dep]["condition"]; c != "service_healthy" {
				t.Errorf("%s: depends_on %s condition %v, want service_healthy", name, dep, c)
			}
		}
		if s.Restart != "unless-stopped" {
			t.Errorf("%s: restart %q, want unless-stopped", name, s.Restart)
		}
		if !strings.Contains(strings.Join(s.Healthcheck.Test, " "), "/readyz") {
			t.Errorf("%s: health check %v does not call /readyz", name, s.Healthcheck.Test)
		}
	}
	if len(zones) != 2 {
		t.Errorf("the nodes are in zones %v, want two zones", zones)
	}

	// Every variable must be a flag: cmd/chatgate ignores unknown ones.
	flags := chatgateFlags(t)
	for name, s := range cf.Services {
		if !strings.HasPrefix(name, "chatgate-") {
			continue
		}
		for k := range s.Environment {
			if !strings.HasPrefix(k, "CHATGATE_") {
				continue
			}
			flag := strings.ReplaceAll(strings.ToLower(strings.TrimPrefix(k, "CHATGATE_")), "_", "-")
			if !flags[flag] {
				t.Errorf("%s sets %s but cmd/chatgate has no -%s flag: the variable would be ignored", name, k, flag)
			}
		}
	}
}

func hasVolumeAt(vols []string, path string) bool {
	for _, v := range vols {
		if parts := strings.Split(v, ":"); len(parts) >= 2 && parts[1] == path {
			return true
		}
	}
	return false
}

// publishes reports whether ports maps host port pub to container port
// target, in the short ("8081:8080") or the long form docker-compose config
// writes ({published: 8081, target: 8080}).
func publishes(ports []any, pub, target int) bool {
	for _, p := range ports {
		switch p := p.(type) {
		case string:
			if p == fmt.Sprintf("%d:%d", pub, target) {
				return true
			}
		case map[string]any:
			if fmt.Sprint(p["published"]) == strconv.Itoa(pub) && fmt.Sprint(p["target"]) == strconv.Itoa(target) {
				return true
			}
		}
	}
	return false
}

// chatgateFlags returns the flag names cmd/chatgate defines, read from its
// source: the first string literal of each fs.XxxVar / fs.Xxx / fs.Var call.
func chatgateFlags(t *testing.T) map[string]bool {
	t.Helper()
	definers := map[string]bool{}
	for _, kind := range []string{"String", "Int", "Int64", "Uint", "Uint64", "Bool", "Duration", "Float64"} {
		definers[kind], definers[kind+"Var"] = true, true
	}
	for _, f := range []string{"Var", "TextVar", "Func", "BoolFunc"} {
		definers[f] = true
	}
	files, err := filepath.Glob(filepath.Join("cmd", "chatgate", "*.go"))
	if err != nil {
		t.Fatal(err)
	}
	flags := map[string]bool{}
	fset := token.NewFileSet()
	for _, path := range files {
		if strings.HasSuffix(path, "_test.go") {
			continue
		}
		f, err := parser.ParseFile(fset, path, nil, 0)
		if err != nil {
			t.Fatalf("parse %s: %v", path, err)
		}
		ast.Inspect(f, func(n ast.Node) bool {
			call, ok := n.(*ast.CallExpr)
			if !ok {
				return true
			}
			sel, ok := call.Fun.(*ast.SelectorExpr)
			if !ok || !definers[sel.Sel.Name] {
				return true
			}
			for _, a := range call.Args {
				if lit, ok := a.(*ast.BasicLit); ok && lit.Kind == token.STRING {
					if s, err := strconv.Unquote(lit.Value); err == nil && regexp.MustCompile(`^[a-z][a-z0-9-]*$`).MatchString(s) {
						flags[s] = true
					}
					break
				}
			}
			return true
		})
	}
	// A sanity check on the parsing itself: main.go defines about twenty.
	for _, f := range []string{"addr", "store", "bus", "consul", "zone", "public-url", "node-id", "check-interval"} {
		if !flags[f] {
			t.Fatalf("found no -%s flag in cmd/chatgate (found %v): has flag parsing moved? update chatgateFlags", f, flags)
		}
	}
	return flags
}

func TestDockerfile(t *testing.T) {
	b, err := os.ReadFile("Dockerfile")
	if err != nil {
		t.Fatal(err)
	}
	df := string(b)
	for _, re := range []string{
		`(?m)^FROM golang:1\.26\S* AS build$`,
		`(?m)go build .* \./cmd/chatgate$`,
		`--mount=type=cache,target=/go/pkg/mod`,
		`(?m)^EXPOSE 8080$`,
		`(?m)^USER chatgate`,
		`(?m)^ENTRYPOINT \["/usr/local/bin/chatgate"\]$`,
	} {
		if !regexp.MustCompile(re).MatchString(df) {
			t.Errorf("Dockerfile does not match %s", re)
		}
	}
	// compose's node health check runs curl inside the image.
	if !strings.Contains(df, "curl") {
		t.Error("the runtime image has no curl for compose's /readyz check")
	}
	// Everything go:embed needs must reach the builder.
	ign, err := os.ReadFile(".dockerignore")
	if err != nil {
		t.Fatal(err)
	}
	for _, line := range strings.Split(string(ign), "\n") {
		line = strings.TrimSpace(line)
		for _, needed := range []string{"web", "core", "cmd", "go.mod", "go.sum"} {
			if strings.TrimPrefix(line, "/") == needed {
				t.Errorf(".dockerignore excludes %s, which the build needs", needed)
			}
		}
	}
}
