// Package cmd_test runs the two example programs (cmd/agent, cmd/orchestrator) end to end against
// a real server: four agents, one orchestrator, every subtask of the plan completed in order.
package cmd_test

import (
	"bufio"
	"context"
	"errors"
	"os"
	"os/exec"
	"path/filepath"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/internal/testserver"
	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
)

const module = "github.com/switchboard-dev/switchboard/clients/go"

// build compiles the examples with the go command and environment this test runs under.
func build(t *testing.T) (agent, orchestrator string) {
	t.Helper()
	dir := t.TempDir()
	agent, orchestrator = filepath.Join(dir, "agent"), filepath.Join(dir, "orchestrator")
	for out, pkg := range map[string]string{agent: module + "/cmd/agent", orchestrator: module + "/cmd/orchestrator"} {
		cmd := exec.Command("go", "build", "-o", out, pkg)
		if output, err := cmd.CombinedOutput(); err != nil {
			t.Fatalf("go build %s: %v\n%s", pkg, err, output)
		}
	}
	return agent, orchestrator
}

type process struct {
	cmd   *exec.Cmd
	mu    sync.Mutex
	lines []string
	ready chan struct{}
	done  chan struct{}
}

func start(t *testing.T, readyText string, name string, args ...string) *process {
	t.Helper()
	return startEnv(t, nil, readyText, name, args...)
}

// startEnv is start with extra environment variables ("NAME=value").
func startEnv(t *testing.T, env []string, readyText string, name string, args ...string) *process {
	t.Helper()
	p := &process{cmd: exec.Command(name, args...), ready: make(chan struct{}), done: make(chan struct{})}
	p.cmd.Env = append(os.Environ(), env...)
	out, err := p.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	p.cmd.Stderr = p.cmd.Stdout
	if err := p.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	go func() {
		defer close(p.done)
		seen := false
		scanner := bufio.NewScanner(out)
		for scanner.Scan() {
			p.mu.Lock()
			p.lines = append(p.lines, scanner.Text())
			p.mu.Unlock()
			if !seen && strings.Contains(scanner.Text(), readyText) {
				seen = true
				close(p.ready)
			}
		}
	}()
	return p
}

func (p *process) output() string {
	p.mu.Lock()
	defer p.mu.Unlock()
	return strings.Join(p.lines, "\n")
}

func TestExamplesEndToEnd(t *testing.T) {
	agentBin, orchestratorBin := build(t)
	srv := testserver.Start(t)

	agents := map[string]*process{}
	for _, a := range []struct{ id, kind, caps string }{
		{"be-1", "backend", "sql,grpc"},
		{"fe-1", "frontend", "react,css"},
		{"qa-1", "testing", "playwright"},
		{"doc-1", "docs", "markdown"},
	} {
		agents[a.id] = start(t, "agent "+a.id, agentBin, "-address", srv.Address, "-id", a.id,
			"-type", a.kind, "-capabilities", a.caps, "-work-ms", "50")
	}
	defer func() {
		for _, p := range agents {
			_ = p.cmd.Process.Kill()
		}
	}()
	for id, p := range agents {
		select {
		case <-p.ready:
		case <-p.done:
			t.Fatalf("agent %s exited:\n%s", id, p.output())
		case <-time.After(30 * time.Second):
			t.Fatalf("agent %s not ready:\n%s", id, p.output())
		}
	}

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	orchestrator := exec.CommandContext(ctx, orchestratorBin, "-address", srv.Address, "-run-id", "feat", "-timeout", "60s")
	out, err := orchestrator.CombinedOutput()
	if err != nil {
		t.Fatalf("orchestrator: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "plan feat: all 5 subtasks completed") || !strings.Contains(string(out), "BLOCKED") {
		t.Fatalf("orchestrator output:\n%s", out)
	}

	final := map[string]*pb.Assignment{}
	for _, name := range []string{"schema", "api", "form", "e2e", "docs"} {
		a, err := srv.Client.GetAssignment(ctx, "feat-"+name)
		if err != nil {
			t.Fatal(err)
		}
		if a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
			t.Fatalf("feat-%s: %v", name, a)
		}
		final[name] = a
	}
	for name, holder := range map[string]string{"schema": "be-1", "api": "be-1", "form": "fe-1", "e2e": "qa-1", "docs": "doc-1"} {
		if final[name].SpecialistId != holder {
			t.Errorf("feat-%s done by %s, want %s", name, final[name].SpecialistId, holder)
		}
	}
	for _, dep := range [][2]string{{"schema", "api"}, {"api", "form"}, {"api", "e2e"}, {"form", "e2e"}, {"api", "docs"}} {
		before, after := final[dep[0]], final[dep[1]]
		if before.FinishedAt.AsTime().After(after.AssignedAt.AsTime()) {
			t.Errorf("%s started before %s finished", dep[1], dep[0])
		}
	}

	for id, p := range agents {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			t.Fatalf("agent %s did not stop:\n%s", id, p.output())
		}
		if err := p.cmd.Wait(); err != nil {
			t.Errorf("agent %s: %v\n%s", id, err, p.output())
		}
	}
	if !strings.Contains(agents["be-1"].output(), "agent be-1 handled 2 subtasks") {
		t.Errorf("be-1 output:\n%s", agents["be-1"].output())
	}
	left, err := srv.Client.Register.ListSpecialists(ctx, &pb.ListSpecialistsRequest{})
	if err != nil {
		t.Fatal(err)
	}
	if len(left.Specialists) != 0 {
		t.Errorf("agents did not deregister: %v", left.Specialists)
	}
}

func TestMain(m *testing.M) {
	// The examples are built with the go command running this test (GOPATH mode in make test).
	if _, err := exec.LookPath("go"); err != nil {
		os.Stderr.WriteString("go command not on PATH\n")
		os.Exit(1)
	}
	os.Exit(m.Run())
}

// The Go agent in README.md's "Clients" section builds and works as written (address aside).
func TestReadmeGoAgent(t *testing.T) {
	readme, err := os.ReadFile(filepath.Join(testserver.RepoRoot(t), "README.md"))
	if err != nil {
		t.Fatal(err)
	}
	text := string(readme)
	from := strings.Index(text, "\n## Clients\n")
	end := strings.Index(text[from+1:], "\n## ")
	if from < 0 || end < 0 {
		t.Fatal("no Clients section in README.md")
	}
	section := text[from : from+1+end]
	blocks := strings.Split(section, "```go\n")
	if len(blocks) != 2 {
		t.Fatalf("want one Go block in the Clients section, found %d", len(blocks)-1)
	}
	source := blocks[1][:strings.Index(blocks[1], "```")]
	if !strings.Contains(source, `"localhost:50051"`) {
		t.Fatal("the README agent should dial localhost:50051")
	}

	srv := testserver.Start(t)
	dir := t.TempDir()
	main := filepath.Join(dir, "main.go")
	if err := os.WriteFile(main, []byte(strings.Replace(source, "localhost:50051", srv.Address, 1)), 0o644); err != nil {
		t.Fatal(err)
	}
	if out, err := exec.Command("gofmt", "-l", main).CombinedOutput(); err != nil || len(out) > 0 {
		t.Fatalf("the README's Go agent is not gofmt-clean: %v %s", err, out)
	}
	bin := filepath.Join(dir, "readme-agent")
	if out, err := exec.Command("go", "build", "-o", bin, main).CombinedOutput(); err != nil {
		t.Fatalf("go build of the README agent: %v\n%s", err, out)
	}
	agent := start(t, "registered fe-3", bin)
	defer func() { _ = agent.cmd.Process.Kill(); <-agent.done; _ = agent.cmd.Wait() }()

	ctx, cancel := context.WithTimeout(context.Background(), 30*time.Second)
	defer cancel()
	if _, err := srv.Client.Assign.Assign(ctx, &pb.AssignRequest{
		SubtaskId: "readme-task", SpecialistType: "frontend", RequiredCapabilities: []string{"react"}, Payload: []byte(`{"n": 1}`),
	}); err != nil {
		t.Fatal(err)
	}
	final, err := srv.Client.Wait(ctx, []string{"readme-task"}, nil)
	if err != nil {
		t.Fatalf("%v\nagent output:\n%s", err, agent.output())
	}
	if a := final["readme-task"]; a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED || a.SpecialistId != "fe-3" {
		t.Fatalf("readme-task: %v\nagent output:\n%s", a, agent.output())
	}
	select {
	case <-agent.ready:
	default:
		t.Fatalf("agent output:\n%s", agent.output())
	}
	if !strings.Contains(agent.output(), `working on readme-task (attempt 1): {"n": 1}`) {
		t.Fatalf("agent output:\n%s", agent.output())
	}
}

// A second agent with the same -id exits 1 unless -take-over; with it, the first exits 3 and its
// unfinished subtask goes to the new one as attempt 2.
func TestAgentExampleTakeOver(t *testing.T) {
	agentBin, _ := build(t)
	srv := testserver.Start(t)
	common := []string{"-address", srv.Address, "-id", "be-1", "-type", "backend", "-capabilities", "sql"}
	first := start(t, "working on long (long), attempt 1", agentBin, append(common, "-work-ms", "60000")...)
	defer func() { _ = first.cmd.Process.Kill() }()

	ctx, cancel := context.WithTimeout(context.Background(), 60*time.Second)
	defer cancel()
	if _, err := srv.Client.Assign.Assign(ctx, &pb.AssignRequest{
		SubtaskId: "long", SpecialistType: "backend", RequiredCapabilities: []string{"sql"},
	}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-first.ready:
	case <-first.done:
		t.Fatalf("first agent exited:\n%s", first.output())
	case <-time.After(30 * time.Second):
		t.Fatalf("first agent never worked on long:\n%s", first.output())
	}

	refused, err := exec.CommandContext(ctx, agentBin, common...).CombinedOutput()
	var exit *exec.ExitError
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(refused), "pass -take-over") {
		t.Fatalf("second agent without -take-over: %v\n%s", err, refused)
	}

	replacement := start(t, "working on long (long), attempt 2", agentBin, append(common, "-take-over", "-work-ms", "50")...)
	defer func() { _ = replacement.cmd.Process.Kill() }()
	select {
	case <-first.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("the first agent did not stop when superseded:\n%s", first.output())
	}
	if err := first.cmd.Wait(); !errors.As(err, &exit) || exit.ExitCode() != 3 || !strings.Contains(first.output(), "superseded") {
		t.Fatalf("first agent: %v (want exit 3, superseded)\n%s", err, first.output())
	}
	final, err := srv.Client.Wait(ctx, []string{"long"}, nil)
	if err != nil {
		t.Fatalf("%v\nreplacement output:\n%s", err, replacement.output())
	}
	if a := final["long"]; a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED || a.Attempt != 2 || a.SpecialistId != "be-1" {
		t.Fatalf("long: %v\nreplacement output:\n%s", a, replacement.output())
	}
	select {
	case <-replacement.ready:
	default:
		t.Fatalf("replacement output:\n%s", replacement.output())
	}
	_ = replacement.cmd.Process.Signal(syscall.SIGTERM)
	select {
	case <-replacement.done:
	case <-time.After(20 * time.Second):
		t.Fatalf("replacement did not stop:\n%s", replacement.output())
	}
	if err := replacement.cmd.Wait(); err != nil {
		t.Fatalf("replacement: %v\n%s", err, replacement.output())
	}
}

// waitReady waits for each process's ready line.
func waitReady(t *testing.T, processes map[string]*process) {
	t.Helper()
	for id, p := range processes {
		select {
		case <-p.ready:
		case <-p.done:
			t.Fatalf("%s exited:\n%s", id, p.output())
		case <-time.After(30 * time.Second):
			t.Fatalf("%s not ready:\n%s", id, p.output())
		}
	}
}

// stopAll sends SIGTERM to each process and waits for it.
func stopAll(processes map[string]*process) {
	for _, p := range processes {
		_ = p.cmd.Process.Signal(syscall.SIGTERM)
	}
	for _, p := range processes {
		select {
		case <-p.done:
		case <-time.After(20 * time.Second):
			_ = p.cmd.Process.Kill()
			<-p.done
		}
		_ = p.cmd.Wait()
	}
}

var fourAgents = []struct{ id, kind, caps string }{
	{"be-1", "backend", "sql,grpc"},
	{"fe-1", "frontend", "react,css"},
	{"qa-1", "testing", "playwright"},
	{"doc-1", "docs", "markdown"},
}

// 50 submissions (10 copies of the plan) against 40 Assigns a minute: the last ones wait the delay
// the server names (RetryInfo) and the plan still goes in whole and completes.
func TestOrchestratorSubmitsABigPlanWholeUnderTheRateLimit(t *testing.T) {
	agentBin, orchestratorBin := build(t)
	srv := testserver.Start(t, "--assign-rate-limit", "40")
	agents := map[string]*process{}
	for _, a := range fourAgents {
		agents[a.id] = start(t, "agent "+a.id+" (", agentBin, "-address", srv.Address, "-id", a.id,
			"-type", a.kind, "-capabilities", a.caps, "-work-ms", "5", "-max-concurrency", "10")
	}
	defer stopAll(agents)
	waitReady(t, agents)

	ctx, cancel := context.WithTimeout(context.Background(), 150*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, orchestratorBin, "-address", srv.Address, "-run-id", "big", "-copies", "10",
		"-work-ms", "5", "-timeout", "90s").CombinedOutput()
	if err != nil {
		t.Fatalf("orchestrator: %v\n%s", err, out)
	}
	if !strings.Contains(string(out), "plan big: all 50 subtasks completed") ||
		!strings.Contains(string(out), "Assign: RESOURCE_EXHAUSTED; retry 1 in 1.") {
		t.Fatalf("orchestrator output:\n%s", out)
	}
}

// The examples take their credentials from flags or SWITCHBOARD_* variables; without a token the
// agent says so and exits 1, and an agent's token cannot submit.
func TestExamplesWithTLSAndTokens(t *testing.T) {
	agentBin, orchestratorBin := build(t)
	pki, key := testserver.NewPKI(t), testserver.Keygen(t)
	srv := testserver.StartWith(t, switchboard.Config{TLSCA: pki.CA, Token: key.Issue(t, "admin")},
		append(pki.ServerArgs(false), key.ServerArgs()...)...)
	agents := map[string]*process{}
	for _, a := range fourAgents {
		env := []string{"SWITCHBOARD_TOKEN=" + key.Issue(t, "agent", "--specialist", a.id), "SWITCHBOARD_TLS_CA=" + pki.CA}
		agents[a.id] = startEnv(t, env, "agent "+a.id+" (", agentBin, "-address", srv.Address, "-id", a.id,
			"-type", a.kind, "-capabilities", a.caps, "-work-ms", "20")
	}
	defer stopAll(agents)
	waitReady(t, agents)

	ctx, cancel := context.WithTimeout(context.Background(), 90*time.Second)
	defer cancel()
	out, err := exec.CommandContext(ctx, orchestratorBin, "-address", srv.Address, "-run-id", "tls", "-timeout", "60s",
		"--token", key.Issue(t, "orchestrator"), "--tls-ca", pki.CA).CombinedOutput()
	if err != nil || !strings.Contains(string(out), "plan tls: all 5 subtasks completed") {
		t.Fatalf("orchestrator: %v\n%s", err, out)
	}

	var exit *exec.ExitError
	anonymous, err := exec.CommandContext(ctx, agentBin, "-address", srv.Address, "-id", "x-1", "-type", "docs",
		"-tls-ca", pki.CA).CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(anonymous), "not authenticated") {
		t.Fatalf("agent without a token: %v\n%s", err, anonymous)
	}
	wrong := exec.CommandContext(ctx, orchestratorBin, "-address", srv.Address, "-tls-ca", pki.CA, "-timeout", "5s")
	wrong.Env = append(os.Environ(), "SWITCHBOARD_TOKEN="+key.Issue(t, "agent", "--specialist", "be-1"))
	refused, err := wrong.CombinedOutput()
	if !errors.As(err, &exit) || exit.ExitCode() != 1 || !strings.Contains(string(refused), "not allowed") {
		t.Fatalf("orchestrator with an agent's token: %v\n%s", err, refused)
	}
}
