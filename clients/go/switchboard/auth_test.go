package switchboard_test

import (
	"context"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/internal/testserver"
	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
	pb "github.com/switchboard-dev/switchboard/clients/go/switchboard/v1"
	"google.golang.org/grpc/codes"
	"google.golang.org/grpc/status"
)

// startSecure runs a server with TLS (a test CA's certificate for 127.0.0.1) and auth on; its own
// Client holds an admin token.
func startSecure(t *testing.T, pki *testserver.PKI, key *testserver.SigningKey, mutual bool) *testserver.Server {
	cfg := switchboard.Config{TLSCA: pki.CA, Token: key.Issue(t, "admin")}
	if mutual {
		cfg.TLSCert, cfg.TLSKey = pki.ClientCert, pki.ClientKey
	}
	return testserver.StartWith(t, cfg, append(pki.ServerArgs(mutual), key.ServerArgs()...)...)
}

func with(cfg switchboard.Config, change func(*switchboard.Config)) switchboard.Config {
	change(&cfg)
	return cfg
}

func TestAgentAndOrchestratorWorkOverTLSWithTokens(t *testing.T) {
	pki, key := testserver.NewPKI(t), testserver.Keygen(t)
	srv := startSecure(t, pki, key, false)
	orchestrator := srv.Connect(t, switchboard.Config{TLSCA: pki.CA, Token: key.Issue(t, "orchestrator")})
	agentClient := srv.Connect(t, switchboard.Config{TLSCA: pki.CA, Token: key.Issue(t, "agent", "--specialist", "fe-1")})
	agent := switchboard.NewAgent(agentClient, switchboard.AgentConfig{
		SpecialistID: "fe-1", Type: "frontend", Capabilities: []string{"react"}, Logf: quiet(t),
	})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	if _, err := orchestrator.Assign.Assign(ctxT(t, 10*time.Second), &pb.AssignRequest{
		SubtaskId: "page", SpecialistType: "frontend", RequiredCapabilities: []string{"react"}, Payload: []byte(`{"n": 1}`),
	}); err != nil {
		t.Fatal(err)
	}
	w := next(t, agent)
	if w.ID() != "page" || string(w.Payload()) != `{"n": 1}` {
		t.Fatalf("work %s %s", w.ID(), w.Payload())
	}
	if _, err := agent.Complete(ctxT(t, 5*time.Second), w, true, 0.9, ""); err != nil {
		t.Fatal(err)
	}
	final, err := orchestrator.Wait(ctxT(t, 30*time.Second), []string{"page"}, nil)
	if err != nil {
		t.Fatal(err)
	}
	if a := final["page"]; a.State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED || a.SpecialistId != "fe-1" {
		t.Fatalf("page: %v", a)
	}
}

func TestWithoutATokenCallsAreUnauthenticated(t *testing.T) {
	pki, key := testserver.NewPKI(t), testserver.Keygen(t)
	srv := startSecure(t, pki, key, false)
	anonymous := srv.Connect(t, switchboard.Config{TLSCA: pki.CA})
	if _, err := anonymous.Assign.Assign(ctxT(t, 5*time.Second), &pb.AssignRequest{SubtaskId: "nope", SpecialistType: "docs"}); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("assign without a token: %v, want UNAUTHENTICATED", err)
	}
	agent := switchboard.NewAgent(anonymous, switchboard.AgentConfig{SpecialistID: "doc-1", Type: "docs", Logf: quiet(t)})
	if err := agent.Start(context.Background()); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("agent without a token: %v, want UNAUTHENTICATED", err)
	}
	forged := srv.Connect(t, switchboard.Config{TLSCA: pki.CA, Token: "not-a-token"})
	if _, err := forged.GetAssignment(ctxT(t, 5*time.Second), "nope"); status.Code(err) != codes.Unauthenticated {
		t.Fatalf("a forged token: %v, want UNAUTHENTICATED", err)
	}
}

func TestAnAgentTokenActsOnlyForItsSpecialistIDs(t *testing.T) {
	pki, key := testserver.NewPKI(t), testserver.Keygen(t)
	srv := startSecure(t, pki, key, false)
	client := srv.Connect(t, switchboard.Config{TLSCA: pki.CA, Token: key.Issue(t, "agent", "--specialist", "fe-1")})
	agent := switchboard.NewAgent(client, switchboard.AgentConfig{SpecialistID: "fe-2", Type: "frontend", Logf: quiet(t)})
	if err := agent.Start(context.Background()); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("fe-1's token registering fe-2: %v, want PERMISSION_DENIED", err)
	}
	if _, err := client.Assign.Assign(ctxT(t, 5*time.Second), &pb.AssignRequest{SubtaskId: "x", SpecialistType: "frontend"}); status.Code(err) != codes.PermissionDenied {
		t.Fatalf("an agent token submitting: %v, want PERMISSION_DENIED", err)
	}
}

func TestMutualTLSWithAClientCertificate(t *testing.T) {
	pki, key := testserver.NewPKI(t), testserver.Keygen(t)
	srv := startSecure(t, pki, key, true)
	submit(t, srv.Client, "mtls", "docs", nil)
	// Without a client certificate the handshake fails: the server never sees the call.
	without := srv.Connect(t, with(srv.Config, func(c *switchboard.Config) {
		c.TLSCert, c.TLSKey, c.Retry = "", "", switchboard.NoRetry
	}))
	if _, err := without.GetAssignment(ctxT(t, 5*time.Second), "mtls"); status.Code(err) != codes.Unavailable {
		t.Fatalf("without a client certificate: %v, want UNAVAILABLE", err)
	}
}

func TestAServerCertificateFromAnotherCAIsRefused(t *testing.T) {
	pki := testserver.NewPKI(t)
	srv := testserver.StartWith(t, switchboard.Config{TLSCA: pki.CA}, pki.ServerArgs(false)...)
	stranger := srv.Connect(t, switchboard.Config{TLSCA: pki.OtherCA, Retry: switchboard.NoRetry})
	if _, err := stranger.GetAssignment(ctxT(t, 5*time.Second), "x"); status.Code(err) != codes.Unavailable {
		t.Fatalf("a server certificate from another CA: %v, want UNAVAILABLE", err)
	}
	// The server name may be overridden: the certificate names localhost too.
	named := srv.Connect(t, switchboard.Config{TLSCA: pki.CA, TLSServerName: "localhost"})
	submit(t, named, "named", "docs", nil)
}

// Per-call credentials that do not require transport security: a token also goes over plaintext.
func TestATokenOverPlaintextOnLoopback(t *testing.T) {
	key := testserver.Keygen(t)
	srv := testserver.StartWith(t, switchboard.Config{Token: key.Issue(t, "admin")}, key.ServerArgs()...)
	orchestrator := srv.Connect(t, switchboard.Config{Token: key.Issue(t, "orchestrator")})
	agent := switchboard.NewAgent(srv.Client, switchboard.AgentConfig{SpecialistID: "doc-1", Type: "docs", Capabilities: []string{"markdown"}, Logf: quiet(t)})
	if err := agent.Start(context.Background()); err != nil {
		t.Fatal(err)
	}
	defer agent.Stop(true)
	submit(t, orchestrator, "plain", "docs", []string{"markdown"})
	w := next(t, agent)
	if _, err := agent.Complete(ctxT(t, 5*time.Second), w, true, 1, ""); err != nil {
		t.Fatal(err)
	}
	final, err := orchestrator.Wait(ctxT(t, 30*time.Second), []string{"plain"}, nil)
	if err != nil || final["plain"].State != pb.AssignmentState_ASSIGNMENT_STATE_COMPLETED {
		t.Fatalf("plain: %v %v", final, err)
	}
}

func TestConnectChecksItsFiles(t *testing.T) {
	pki := testserver.NewPKI(t)
	if _, err := switchboard.Connect("127.0.0.1:1", switchboard.Config{TLSCert: pki.ClientCert}); err == nil {
		t.Fatal("TLSCert without TLSKey accepted")
	}
	if _, err := switchboard.Connect("127.0.0.1:1", switchboard.Config{TLSCA: pki.CA + ".missing"}); err == nil {
		t.Fatal("a missing CA file accepted")
	}
}
