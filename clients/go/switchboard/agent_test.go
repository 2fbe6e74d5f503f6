package switchboard_test

import (
	"context"
	"errors"
	"strings"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/internal/testserver"
	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

func quiet(t *testing.T) func(string, ...interface{}) {
	return func(format string, args ...interface{}) { t.Logf(format, args...) }
}

func ctxT(t *testing.T, d time.Duration) context.Context {
	ctx, cancel := context.WithTimeout(context.Background(), d)
	t.Cleanup(cancel)
	return ctx
}

func submit(t *testing.T, c *switchboard.Client, id, kind string, caps []string, deps ...string) *pb.Assignment {
	t.Helper()
	reply, err := c.Assign.Assign(ctxT(t, 10*time.Second), &pb.AssignRequest{
		SubtaskId: id, SpecialistType: kind, RequiredCapabilities: caps, DependsOn: deps,
	})
	if err != nil {
		t.Fatalf("assign %s: %v", id, err)
	}
	return reply.Assignment
}

func next(t *testing.T, a *switchboard.Agent) *switchboard.Work {
	t.Helper()
	w, err := a.Next(ctxT(t, 10*time.Second))
	if err != nil {
		t.Fatalf("next work: %v", err)
	}
	return w
}

func TestAgentHeartbeatsAndCompletes(t *testing.T) {
	srv := testserver.Start(t, "--lease-ttl-ms", "1000", "--heartbeat-interval-ms", "100", "--sweep-interval-ms", "50")
	agent := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{
		SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t),
	})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	if got := agent.HeartbeatInterval(); got != 100*time.Millisecond {
		t.Fatalf("heartbeat interval %v, want the server's 100ms", got)
	}
	if agent.Incarnation() == "" {
		t.Fatal("no incarnation from Register (every heartbeat quotes it)")
	}
	assigned := submit(t, srv.Client, "job-1", "backend", []string{"sql"})
	w := next(t, agent)
	if w.ID() != "job-1" || w.Epoch() != assigned.Epoch {
		t.Fatalf("got %s epoch %d, want job-1 epoch %d", w.ID(), w.Epoch(), assigned.Epoch)
	}
	time.Sleep(2500 * time.Millisecond) // over two lease lengths: only the heartbeats keep it alive
	reply, err := srv.Client.Register.GetSpecialist(ctxT(t, 5*time.Second), &pb.GetSpecialistRequest{SpecialistId: "be-1"})
	if err != nil {
		t.Fatal(err)
	}
	if reply.Specialist.Availability != pb.Availability_AVAILABILITY_ONLINE || reply.Specialist.ActiveAssignments != 1 {
		t.Fatalf("specialist %v", reply.Specialist)
	}
	if agent.Err() != nil || w.IsRevoked() {
		t.Fatalf("after heartbeats: err %v, revoked %v", agent.Err(), w.IsRevoked())
	}
	done, err := agent.Complete(ctxT(t, 5*time.Second), w, true, 0.8, "")
	if err != nil || done.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
		t.Fatalf("complete: %v %v", done, err)
	}
	if len(agent.Held()) != 0 {
		t.Fatalf("still held: %v", agent.Held())
	}
}

func TestCancelRevokesAndReportIsFenced(t *testing.T) {
	srv := testserver.Start(t)
	revoked := make(chan string, 1)
	agent := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{
		Type: "docs", Capabilities: []string{"markdown"}, Logf: quiet(t),
		OnRevoked: func(w *switchboard.Work) { revoked <- w.ID() },
	})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	if agent.ID() != "specialist-docs-1" {
		t.Fatalf("minted id %q", agent.ID())
	}
	submit(t, srv.Client, "doc-1", "docs", []string{"markdown"})
	w := next(t, agent)
	if _, err := srv.Client.Assign.Cancel(ctxT(t, 5*time.Second), &pb.CancelRequest{SubtaskId: "doc-1"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-w.Revoked():
	case <-time.After(5 * time.Second):
		t.Fatal("no REVOKED event")
	}
	if id := <-revoked; id != "doc-1" {
		t.Fatalf("OnRevoked(%s)", id)
	}
	if _, err := agent.Complete(ctxT(t, 5*time.Second), w, true, 1, ""); !errors.Is(err, switchboard.ErrAssignmentLost) {
		t.Fatalf("report after cancel: %v, want ErrAssignmentLost", err)
	}
}

func TestLapsedLeaseMovesWorkAndFencesOldHolder(t *testing.T) {
	srv := testserver.Start(t, "--lease-ttl-ms", "1000", "--heartbeat-interval-ms", "100", "--sweep-interval-ms", "50")
	slow := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{SpecialistID: "slow", Type: "testing", Capabilities: []string{"pytest"}, Logf: quiet(t)})
	if err := slow.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	submit(t, srv.Client, "flaky", "testing", []string{"pytest"})
	first := next(t, slow)
	slow.Stop(false) // no heartbeats, no deregistration: the lease lapses
	fresh := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{SpecialistID: "fresh", Type: "testing", Capabilities: []string{"pytest"}, Logf: quiet(t)})
	if err := fresh.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer fresh.Stop(true)
	second := next(t, fresh)
	if second.ID() != "flaky" || second.Attempt() != 2 || second.Epoch() <= first.Epoch() {
		t.Fatalf("second hand-out %s attempt %d epoch %d (first epoch %d)", second.ID(), second.Attempt(), second.Epoch(), first.Epoch())
	}
	if _, err := slow.Complete(ctxT(t, 5*time.Second), first, true, 1, ""); !errors.Is(err, switchboard.ErrAssignmentLost) {
		t.Fatalf("stale report: %v, want ErrAssignmentLost", err)
	}
	if a, err := fresh.Complete(ctxT(t, 5*time.Second), second, true, 1, ""); err != nil || a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
		t.Fatalf("complete: %v %v", a, err)
	}
}

// The raw protocol: drop the stream, work arrives meanwhile, the new stream replays all of it.
func TestWatchReplaysInFlightWorkOnReconnect(t *testing.T) {
	srv := testserver.Start(t)
	c := srv.Client
	registered, err := c.Register.Register(ctxT(t, 5*time.Second), &pb.RegisterRequest{
		SpecialistId: "fe-1", SpecialistType: "frontend", Capabilities: []string{"react"}, MaxConcurrency: 3,
	})
	if err != nil {
		t.Fatal(err)
	}
	request := &pb.WatchAssignmentsRequest{SpecialistId: "fe-1", Incarnation: registered.Incarnation}
	watchCtx, drop := context.WithCancel(context.Background())
	stream, err := c.Assign.WatchAssignments(watchCtx, request)
	if err != nil {
		t.Fatal(err)
	}
	a := submit(t, c, "A", "frontend", []string{"react"})
	event, err := stream.Recv()
	if err != nil || event.Assignment.SubtaskId != "A" {
		t.Fatalf("first event %v %v", event, err)
	}
	drop()
	if _, err := stream.Recv(); status.Code(err) != codes.Canceled {
		t.Fatalf("after cancel: %v", err)
	}
	b := submit(t, c, "B", "frontend", []string{"react"}) // assigned while nobody watches
	if b.State != pb.AssignmentState_ASSIGNMENT_STATE_ASSIGNED || b.SpecialistId != "fe-1" {
		t.Fatalf("B: %v", b)
	}

	watchCtx, drop = context.WithCancel(context.Background())
	defer drop()
	stream, err = c.Assign.WatchAssignments(watchCtx, request)
	if err != nil {
		t.Fatal(err)
	}
	got := map[string]uint64{}
	for i := 0; i < 2; i++ {
		event, err := stream.Recv()
		if err != nil {
			t.Fatal(err)
		}
		if event.Kind != pb.WatchEventKind_WATCH_EVENT_KIND_ASSIGNED || event.Subtask.GetSubtaskId() != event.Assignment.SubtaskId {
			t.Fatalf("replayed %v", event)
		}
		got[event.Assignment.SubtaskId] = event.Assignment.Epoch
	}
	if got["A"] != a.Epoch || got["B"] != b.Epoch || len(got) != 2 {
		t.Fatalf("replay %v, want A@%d and B@%d", got, a.Epoch, b.Epoch)
	}
	extra := make(chan error, 1)
	go func() { _, err := stream.Recv(); extra <- err }()
	select {
	case err := <-extra:
		t.Fatalf("unexpected extra event or end: %v", err)
	case <-time.After(300 * time.Millisecond): // nothing twice
	}
}

func TestAgentReconnectsWithoutLosingOrRepeatingWork(t *testing.T) {
	srv := testserver.Start(t)
	c := srv.Client
	agent := switchboard.NewAgent(c, switchboard.AgentConfig{
		SpecialistID: "fe-1", Type: "frontend", Capabilities: []string{"react"}, MaxConcurrency: 3, Logf: quiet(t),
	})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	submit(t, c, "A", "frontend", []string{"react"})
	a := next(t, agent)
	for round := 0; round < 3; round++ {
		agent.Reconnect()
		id := "B" + string(rune('0'+round))
		submit(t, c, id, "frontend", []string{"react"})
		b := next(t, agent)
		if b.ID() != id {
			t.Fatalf("got %s, want %s", b.ID(), id)
		}
		if _, err := agent.Complete(ctxT(t, 5*time.Second), b, true, 1, ""); err != nil {
			t.Fatal(err)
		}
	}
	deadline := time.Now().Add(5 * time.Second)
	for (agent.Reconnects() < 3 || !agent.Connected()) && time.Now().Before(deadline) {
		time.Sleep(10 * time.Millisecond)
	}
	if agent.Reconnects() < 3 {
		t.Fatalf("reconnects %d", agent.Reconnects())
	}
	short, cancel := context.WithTimeout(context.Background(), 500*time.Millisecond)
	defer cancel()
	if w, err := agent.Next(short); err == nil {
		t.Fatalf("%s (epoch %d) handed out twice", w.ID(), w.Epoch())
	}
	if a.IsRevoked() {
		t.Fatal("A revoked")
	}
	if done, err := agent.Complete(ctxT(t, 5*time.Second), a, true, 1, ""); err != nil || done.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
		t.Fatalf("complete A: %v %v", done, err)
	}
}

func TestAgentSurvivesBeingDeregistered(t *testing.T) {
	srv := testserver.Start(t)
	c := srv.Client
	agent := switchboard.NewAgent(c, switchboard.AgentConfig{SpecialistID: "be-9", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t)})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	submit(t, c, "x", "backend", []string{"sql"})
	x := next(t, agent)
	if _, err := c.Register.Deregister(ctxT(t, 5*time.Second), &pb.DeregisterRequest{SpecialistId: "be-9"}); err != nil {
		t.Fatal(err)
	}
	select {
	case <-x.Revoked():
	case <-time.After(5 * time.Second):
		t.Fatal("not revoked after deregistration")
	}
	again := next(t, agent)
	if again.ID() != "x" || again.Epoch() <= x.Epoch() {
		t.Fatalf("again %s epoch %d", again.ID(), again.Epoch())
	}
	if _, err := agent.Complete(ctxT(t, 5*time.Second), again, true, 1, ""); err != nil {
		t.Fatal(err)
	}
}

func TestRunReportsOutcomesAndFailuresCascade(t *testing.T) {
	srv := testserver.Start(t)
	c := srv.Client
	submit(t, c, "a", "backend", []string{"sql"})
	if b := submit(t, c, "b", "backend", []string{"sql"}, "a"); b.State != pb.AssignmentState_ASSIGNMENT_STATE_BLOCKED {
		t.Fatalf("b: %v", b.State)
	}
	submit(t, c, "ok", "backend", []string{"sql"})
	agent := switchboard.NewAgent(c, switchboard.AgentConfig{SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, MaxConcurrency: 2, Logf: quiet(t)})
	handled, err := agent.Run(context.Background(), func(ctx context.Context, w *switchboard.Work) (switchboard.Result, error) {
		if w.ID() == "a" {
			return switchboard.Result{}, errors.New("boom")
		}
		return switchboard.Result{Quality: 0.7, Detail: "fine"}, nil
	}, 2, 2)
	agent.Stop(true)
	if err != nil || handled != 2 {
		t.Fatalf("run: %d %v", handled, err)
	}
	final, err := c.Wait(ctxT(t, 10*time.Second), []string{"a", "b", "ok"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if final["a"].State != pb.AssignmentState_ASSIGNMENT_STATE_FAILED || !strings.Contains(final["a"].Detail, "boom") {
		t.Fatalf("a: %v", final["a"])
	}
	if final["b"].State != pb.AssignmentState_ASSIGNMENT_STATE_FAILED {
		t.Fatalf("b should fail with its dependency: %v", final["b"])
	}
	if final["ok"].State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
		t.Fatalf("ok: %v", final["ok"])
	}
}

func TestWaitReadyTimesOut(t *testing.T) {
	c, err := switchboard.Dial("127.0.0.1:1")
	if err != nil {
		t.Fatal(err)
	}
	defer c.Close()
	if err := c.WaitReady(ctxT(t, 500*time.Millisecond), ""); !errors.Is(err, context.DeadlineExceeded) {
		t.Fatalf("WaitReady: %v", err)
	}
}

// The stream ends UNAVAILABLE on shutdown; the agent reconnects with backoff, finds itself unknown to
// the new (empty, in-memory) server, registers again and takes new work. Old work is revoked.
func TestAgentRidesOutAServerRestart(t *testing.T) {
	old := testserver.Start(t)
	client, err := switchboard.Dial(old.Address) // the agent's own connection, kept across the restart
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	agent := switchboard.NewAgent(client, switchboard.AgentConfig{
		SpecialistID: "be-r", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t),
		ReconnectMin: 50 * time.Millisecond, ReconnectMax: 200 * time.Millisecond,
	})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	submit(t, old.Client, "before", "backend", []string{"sql"})
	before := next(t, agent)
	old.Stop()
	fresh := testserver.Start(t, "--listen", old.Address)
	select {
	case <-before.Revoked():
	case <-time.After(15 * time.Second):
		t.Fatal("work of the old server not revoked")
	}
	submit(t, fresh.Client, "after", "backend", []string{"sql"})
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	after, err := agent.Next(ctx)
	if err != nil || after.ID() != "after" {
		t.Fatalf("after restart: %v %v", after, err)
	}
	if _, err := agent.Complete(ctxT(t, 5*time.Second), after, true, 1, ""); err != nil {
		t.Fatal(err)
	}
}

// Ending Run's ctx interrupts handlers without reporting failures; Stop(true) requeues their work.
func TestShutdownRequeuesUnfinishedWork(t *testing.T) {
	srv := testserver.Start(t)
	agent := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{SpecialistID: "be-s", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t)})
	submit(t, srv.Client, "long", "backend", []string{"sql"})
	ctx, cancel := context.WithCancel(context.Background())
	started := make(chan struct{})
	done := make(chan error, 1)
	go func() {
		_, err := agent.Run(ctx, func(ctx context.Context, w *switchboard.Work) (switchboard.Result, error) {
			close(started)
			<-ctx.Done()
			return switchboard.Result{}, ctx.Err()
		}, 1, 0)
		done <- err
	}()
	select {
	case <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("handler never started")
	}
	cancel()
	if err := <-done; err != nil {
		t.Fatalf("run: %v", err)
	}
	agent.Stop(true)
	a, err := srv.Client.GetAssignment(ctxT(t, 5*time.Second), "long")
	if err != nil {
		t.Fatal(err)
	}
	if a.State != pb.AssignmentState_ASSIGNMENT_STATE_QUEUED || a.Attempt != 1 {
		t.Fatalf("after shutdown: %v (want QUEUED, attempt 1: leaving is not a failed try)", a)
	}
}

func TestSecondAgentWithTheSameIDIsRefused(t *testing.T) {
	srv := testserver.Start(t)
	c := srv.Client
	first := switchboard.NewAgent(c, switchboard.AgentConfig{SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t)})
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Stop(true)
	second := switchboard.NewAgent(c, switchboard.AgentConfig{SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t)})
	err := second.Start(context.Background())
	if !errors.Is(err, switchboard.ErrAlreadyRegistered) || status.Code(err) != codes.AlreadyExists {
		t.Fatalf("second Start: %v (code %v), want ErrAlreadyRegistered / ALREADY_EXISTS", err, status.Code(err))
	}
	if !strings.Contains(err.Error(), "TakeOver") {
		t.Fatalf("the error should say how to take over: %v", err)
	}
	// The first is untouched: it still takes and reports work.
	submit(t, c, "still-mine", "backend", []string{"sql"})
	w := next(t, first)
	if w.Attempt() != 1 {
		t.Fatalf("attempt %d", w.Attempt())
	}
	if _, err := first.Complete(ctxT(t, 5*time.Second), w, true, 1, ""); err != nil || first.Err() != nil {
		t.Fatalf("complete: %v, agent: %v", err, first.Err())
	}
}

func TestTakeOverSupersedesTheFirstAgent(t *testing.T) {
	srv := testserver.Start(t)
	c := srv.Client
	first := switchboard.NewAgent(c, switchboard.AgentConfig{SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t)})
	started := make(chan *switchboard.Work, 1)
	ran := make(chan error, 1)
	if err := first.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer first.Stop(false)
	go func() {
		_, err := first.Run(context.Background(), func(ctx context.Context, w *switchboard.Work) (switchboard.Result, error) {
			started <- w
			<-ctx.Done() // works until taken away
			return switchboard.Result{}, ctx.Err()
		}, 1, 0)
		ran <- err
	}()
	submit(t, c, "held", "backend", []string{"sql"})
	var held *switchboard.Work
	select {
	case held = <-started:
	case <-time.After(10 * time.Second):
		t.Fatal("the first agent never got the work")
	}
	if held.ID() != "held" || held.Attempt() != 1 {
		t.Fatalf("held %s attempt %d", held.ID(), held.Attempt())
	}

	second := switchboard.NewAgent(c, switchboard.AgentConfig{SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, TakeOver: true, Logf: quiet(t)})
	if err := second.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer second.Stop(true)
	if second.Incarnation() == "" || second.Incarnation() == first.Incarnation() {
		t.Fatalf("incarnations %q and %q", first.Incarnation(), second.Incarnation())
	}
	select {
	case err := <-ran:
		if !errors.Is(err, switchboard.ErrSuperseded) {
			t.Fatalf("first Run: %v, want ErrSuperseded", err)
		}
	case <-time.After(10 * time.Second):
		t.Fatal("the first agent was not superseded")
	}
	if !errors.Is(first.Err(), switchboard.ErrSuperseded) {
		t.Fatalf("first Err: %v", first.Err())
	}
	if !held.IsRevoked() {
		t.Fatal("the work of a superseded agent is no longer its to report")
	}
	if _, err := first.Next(ctxT(t, time.Second)); !errors.Is(err, switchboard.ErrSuperseded) {
		t.Fatalf("first Next: %v", err)
	}
	if _, err := first.Complete(ctxT(t, 5*time.Second), held, true, 1, ""); !errors.Is(err, switchboard.ErrAssignmentLost) {
		t.Fatalf("report by the superseded agent: %v, want ErrAssignmentLost", err)
	}

	again := next(t, second)
	if again.ID() != "held" || again.Attempt() != 2 || again.Epoch() <= held.Epoch() {
		t.Fatalf("second hand-out %s attempt %d epoch %d (first epoch %d)", again.ID(), again.Attempt(), again.Epoch(), held.Epoch())
	}
	first.Stop(true) // superseded: leaves the id to the second
	reply, err := c.Register.GetSpecialist(ctxT(t, 5*time.Second), &pb.GetSpecialistRequest{SpecialistId: "be-1"})
	if err != nil || reply.Specialist.ActiveAssignments != 1 {
		t.Fatalf("after the first stopped: %v %v", reply, err)
	}
	if a, err := second.Complete(ctxT(t, 5*time.Second), again, true, 1, ""); err != nil || a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
		t.Fatalf("complete: %v %v", a, err)
	}
	if second.Err() != nil {
		t.Fatalf("second Err: %v", second.Err())
	}
}
