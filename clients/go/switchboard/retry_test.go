package switchboard_test

import (
	"context"
	"fmt"
	"io"
	"net"
	"sync"
	"sync/atomic"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/internal/testserver"
	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

type retried struct {
	method string
	code   codes.Code
	delay  time.Duration
	retry  int
}

// retries records every retry of the clients using its hook.
type retries struct {
	mu   sync.Mutex
	seen []retried
}

func (r *retries) hook(method string, err error, delay time.Duration, retry int) {
	r.mu.Lock()
	defer r.mu.Unlock()
	r.seen = append(r.seen, retried{method, status.Code(err), delay, retry})
}

func (r *retries) list() []retried {
	r.mu.Lock()
	defer r.mu.Unlock()
	return append([]retried(nil), r.seen...)
}

// 40 Assigns a minute per caller, bursting to 40: the last 8 of 48 each wait for the next token
// (1.5 s), which the server names in RetryInfo; the plan goes in whole and completes.
func TestPlanOf48GoesInWholeUnderTheAssignRateLimit(t *testing.T) {
	srv := testserver.Start(t, "--assign-rate-limit", "40")
	var seen retries
	planner := srv.Connect(t, switchboard.Config{CallerID: "planner", Retry: switchboard.RetryPolicy{OnRetry: seen.hook}})
	agent := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{
		SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, MaxConcurrency: 48, Logf: quiet(t),
	})
	ctx := ctxT(t, 90*time.Second)
	ran := make(chan error, 1)
	go func() {
		_, err := agent.Run(ctx, func(context.Context, *switchboard.Work) (switchboard.Result, error) {
			return switchboard.Result{Quality: 1}, nil
		}, 8, 48)
		ran <- err
	}()
	defer agent.Stop(true)

	var ids []string
	started := time.Now()
	for n := 0; n < 48; n++ {
		id := fmt.Sprintf("plan-%02d", n)
		var deps []string
		if n%4 == 3 { // every fourth depends on the one before: dependants go in BLOCKED
			deps = []string{ids[n-1]}
		}
		callCtx, cancel := context.WithTimeout(ctx, time.Minute)
		reply, err := planner.Assign.Assign(callCtx, &pb.AssignRequest{
			SubtaskId: id, SpecialistType: "backend", RequiredCapabilities: []string{"sql"}, DependsOn: deps,
		})
		cancel()
		if err != nil {
			t.Fatalf("assign %s: %v (retries so far %v)", id, err, seen.list())
		}
		if reply.Assignment.SubtaskId != id {
			t.Fatalf("assign %s: %v", id, reply.Assignment)
		}
		ids = append(ids, id)
	}
	submitted := time.Since(started)
	final, err := planner.Wait(ctx, ids, nil)
	if err != nil {
		t.Fatal(err)
	}
	for id, a := range final {
		if a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
			t.Errorf("%s: %v", id, a)
		}
	}
	if err := <-ran; err != nil {
		t.Fatal(err)
	}
	if submitted > 45*time.Second {
		t.Errorf("48 submissions took %v", submitted)
	}
	var assigns []retried
	for _, r := range seen.list() {
		if r.method == "/switchboard.v1.AssignService/Assign" {
			assigns = append(assigns, r)
		}
	}
	if len(assigns) == 0 {
		t.Fatal("the limit was never hit")
	}
	for _, r := range assigns {
		// The server's wait (about 1.5 s for the next token), not a 0.1 s first backoff: one retry each.
		if r.code != codes.ResourceExhausted || r.delay < time.Second || r.retry > 2 {
			t.Errorf("retry %+v, want RESOURCE_EXHAUSTED waiting the server's ~1.5s", r)
		}
	}
}

func TestCallerIDNamesTheRateLimitBucketAndRetryDelayReadsRetryInfo(t *testing.T) {
	srv := testserver.Start(t, "--assign-rate-limit", "3")
	alice := srv.Connect(t, switchboard.Config{CallerID: "alice", Retry: switchboard.NoRetry})
	bob := srv.Connect(t, switchboard.Config{CallerID: "bob", Retry: switchboard.NoRetry})
	for n := 0; n < 3; n++ {
		submit(t, alice, fmt.Sprintf("a-%d", n), "docs", nil)
	}
	_, err := alice.Assign.Assign(ctxT(t, 5*time.Second), &pb.AssignRequest{SubtaskId: "a-3", SpecialistType: "docs"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("fourth assign: %v, want RESOURCE_EXHAUSTED", err)
	}
	// 3 a minute: the next token comes in up to 20 s.
	if delay, ok := switchboard.RetryDelay(err); !ok || delay <= 10*time.Second || delay > 20*time.Second {
		t.Fatalf("RetryDelay %v %v", delay, ok)
	}
	submit(t, bob, "b-0", "docs", nil) // another caller id has its own bucket
}

func TestNoRetryWhenTheServersWaitDoesNotFitTheDeadline(t *testing.T) {
	srv := testserver.Start(t, "--assign-rate-limit", "1")
	var seen retries
	client := srv.Connect(t, switchboard.Config{CallerID: "one", Retry: switchboard.RetryPolicy{OnRetry: seen.hook}})
	submit(t, client, "first", "docs", nil)
	started := time.Now()
	_, err := client.Assign.Assign(ctxT(t, 2*time.Second), &pb.AssignRequest{SubtaskId: "second", SpecialistType: "docs"})
	if status.Code(err) != codes.ResourceExhausted {
		t.Fatalf("second assign: %v", err)
	}
	if elapsed := time.Since(started); elapsed > 1500*time.Millisecond {
		t.Fatalf("a 60 s wait does not fit in 2 s: the error should come at once, took %v", elapsed)
	}
	if len(seen.list()) != 0 {
		t.Fatalf("retried: %v", seen.list())
	}
}

func freeAddress(t *testing.T) string {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	defer listener.Close()
	return listener.Addr().String()
}

func TestUnavailableIsRetriedBoundedForCallsSafeToRepeat(t *testing.T) {
	var seen retries
	client, err := switchboard.Connect(freeAddress(t), switchboard.Config{Retry: switchboard.RetryPolicy{
		MaxRetries: 3, InitialBackoff: 20 * time.Millisecond, MaxBackoff: 100 * time.Millisecond, OnRetry: seen.hook,
	}})
	if err != nil {
		t.Fatal(err)
	}
	defer client.Close()
	if _, err := client.GetAssignment(ctxT(t, 10*time.Second), "x"); status.Code(err) != codes.Unavailable {
		t.Fatalf("GetAssignment with no server: %v", err)
	}
	got := seen.list()
	if len(got) != 3 {
		t.Fatalf("retries %v, want 3", got)
	}
	for i, r := range got {
		if r.retry != i+1 || r.delay < 10*time.Millisecond || r.delay > 100*time.Millisecond {
			t.Errorf("retry %+v", r)
		}
	}
	seen = retries{}
	// Deregister is not repeated on UNAVAILABLE (a second one after the first applied fails).
	if _, err := client.Register.Deregister(ctxT(t, 10*time.Second), &pb.DeregisterRequest{SpecialistId: "x"}); status.Code(err) != codes.Unavailable {
		t.Fatalf("Deregister with no server: %v", err)
	}
	if len(seen.list()) != 0 {
		t.Fatalf("Deregister retried: %v", seen.list())
	}
}

// cuttingProxy is a TCP proxy in front of a plaintext server that can lose one answer: once armed,
// it closes the connection where it would have passed on the server's next response HEADERS frame
// (HTTP/2), so the server has acted and the client hears UNAVAILABLE.
type cuttingProxy struct {
	listener net.Listener
	target   string
	armed    atomic.Bool
	cuts     atomic.Int32
}

func newCuttingProxy(t *testing.T, target string) *cuttingProxy {
	listener, err := net.Listen("tcp", "127.0.0.1:0")
	if err != nil {
		t.Fatal(err)
	}
	p := &cuttingProxy{listener: listener, target: target}
	t.Cleanup(func() { listener.Close() })
	go p.accept()
	return p
}

func (p *cuttingProxy) accept() {
	for {
		client, err := p.listener.Accept()
		if err != nil {
			return
		}
		upstream, err := net.Dial("tcp", p.target)
		if err != nil {
			client.Close()
			continue
		}
		go func() {
			_, _ = io.Copy(upstream, client)
			client.Close()
			upstream.Close()
		}()
		go p.responses(upstream, client)
	}
}

func (p *cuttingProxy) responses(upstream, client net.Conn) {
	defer client.Close()
	defer upstream.Close()
	var buffer []byte
	chunk := make([]byte, 65536)
	for {
		n, err := upstream.Read(chunk)
		if err != nil {
			return
		}
		buffer = append(buffer, chunk[:n]...)
		for len(buffer) >= 9 {
			size := 9 + (int(buffer[0])<<16 | int(buffer[1])<<8 | int(buffer[2]))
			if len(buffer) < size {
				break
			}
			frame := buffer[:size]
			kind := frame[3]
			stream := (uint32(frame[5])<<24 | uint32(frame[6])<<16 | uint32(frame[7])<<8 | uint32(frame[8])) & 0x7fffffff
			if kind == 0x1 && stream != 0 && p.armed.CompareAndSwap(true, false) {
				p.cuts.Add(1)
				return // answer lost on purpose
			}
			if _, err := client.Write(frame); err != nil {
				return
			}
			buffer = buffer[size:]
		}
	}
}

// The server applied the Release (or ReportCompletion) but its answer was lost: the agent repeats
// it. A repeated report returns the recorded result; a repeated Release is refused
// (FAILED_PRECONDITION) and counts as released.
func TestAReportWhoseAnswerWasLostIsRepeatedSafely(t *testing.T) {
	for _, report := range []string{"release", "complete"} {
		t.Run(report, func(t *testing.T) {
			srv := testserver.Start(t)
			proxy := newCuttingProxy(t, srv.Address)
			client, err := switchboard.Dial(proxy.listener.Addr().String())
			if err != nil {
				t.Fatal(err)
			}
			defer client.Close()
			agent := switchboard.NewAgent(client, switchboard.AgentConfig{
				SpecialistID: "be-1", Type: "backend", Capabilities: []string{"sql"}, Logf: quiet(t),
			})
			if err := agent.Start(context.Background()); err != nil {
				t.Fatal(err)
			}
			defer agent.Stop(true)
			submit(t, srv.Client, "job", "backend", []string{"sql"})
			w := next(t, agent)
			proxy.armed.Store(true)
			var a *pb.Assignment
			want := pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED
			if report == "release" {
				a, err = agent.Release(ctxT(t, 20*time.Second), w, "giving it back")
				want = pb.AssignmentState_ASSIGNMENT_STATE_QUEUED // and not offered to this agent again
			} else {
				a, err = agent.Complete(ctxT(t, 20*time.Second), w, true, 0.7, "")
			}
			if err != nil || a.State != want {
				t.Fatalf("%s: %v %v, want %v", report, a, err, want)
			}
			if proxy.cuts.Load() != 1 {
				t.Fatalf("answers lost: %d, want 1", proxy.cuts.Load())
			}
			if len(agent.Held()) != 0 || w.IsRevoked() {
				t.Fatalf("held %v, revoked %v", agent.Held(), w.IsRevoked())
			}
			now, err := srv.Client.GetAssignment(ctxT(t, 5*time.Second), "job")
			if err != nil || now.State != want {
				t.Fatalf("on the server: %v %v", now, err)
			}
		})
	}
}
