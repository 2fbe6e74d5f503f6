// Package testserver starts the real Switchboard server (target/debug/switchboard) for tests.
package testserver

import (
	"bufio"
	"context"
	"fmt"
	"os"
	"os/exec"
	"path/filepath"
	"regexp"
	"strings"
	"sync"
	"syscall"
	"testing"
	"time"

	"github.com/switchboard-dev/switchboard/clients/go/switchboard"
)

// Server is one `switchboard serve` on 127.0.0.1 with port 0.
type Server struct {
	Address        string // gRPC host:port, from the log line "serving grpc_addr=..."
	MetricsAddress string
	Client         *switchboard.Client
	Config         switchboard.Config // what Client connected with

	cmd      *exec.Cmd
	readDone chan struct{}
	mu       sync.Mutex
	lines    []string
}

var (
	ansi        = regexp.MustCompile("\x1b\\[[0-9;]*m")
	grpcAddr    = regexp.MustCompile(`grpc_addr=(\S+)`)
	metricsAddr = regexp.MustCompile(`metrics_addr=(\S+)`)
)

// RepoRoot is the repository holding this package (the directory with Cargo.toml).
func RepoRoot(t testing.TB) string {
	dir, err := os.Getwd()
	if err != nil {
		t.Fatal(err)
	}
	// Through the GOPATH symlink the working directory may not be inside the repository.
	if real, err := filepath.EvalSymlinks(dir); err == nil {
		dir = real
	}
	for d := dir; ; d = filepath.Dir(d) {
		if _, err := os.Stat(filepath.Join(d, "Cargo.toml")); err == nil {
			return d
		}
		if filepath.Dir(d) == d {
			t.Fatalf("no Cargo.toml above %s", dir)
		}
	}
}

// Binary is $SWITCHBOARD_BIN, else target/debug/switchboard of the repository.
func Binary(t testing.TB) string {
	if bin := os.Getenv("SWITCHBOARD_BIN"); bin != "" {
		return bin
	}
	return filepath.Join(RepoRoot(t), "target", "debug", "switchboard")
}

// Start runs the server with extra flags (default --listen 127.0.0.1:0; the Assign rate limit off
// unless they set one) and waits until it reports SERVING over grpc health. It is stopped
// (SIGTERM) when the test ends.
func Start(t testing.TB, extraArgs ...string) *Server {
	t.Helper()
	return StartWith(t, switchboard.Config{}, extraArgs...)
}

// StartWith is Start whose Client connects with cfg (TLS files, a token).
func StartWith(t testing.TB, cfg switchboard.Config, extraArgs ...string) *Server {
	t.Helper()
	bin := Binary(t)
	if _, err := os.Stat(bin); err != nil {
		t.Fatalf("%s is missing: run `cargo build` first (make test does): %v", bin, err)
	}
	args := []string{"serve", "--metrics-listen", "127.0.0.1:0"}
	listen, rateLimit := true, true
	for _, arg := range extraArgs {
		switch arg {
		case "--listen":
			listen = false // the caller names the address (e.g. a restart on the same port)
		case "--assign-rate-limit":
			rateLimit = false
		}
	}
	if listen {
		args = append(args, "--listen", "127.0.0.1:0")
	}
	if rateLimit {
		args = append(args, "--assign-rate-limit", "0")
	}
	args = append(args, extraArgs...)
	s := &Server{cmd: exec.Command(bin, args...), readDone: make(chan struct{}), Config: cfg}
	s.cmd.Env = append(os.Environ(), "SWITCHBOARD_LOG_FORMAT=text", "SWITCHBOARD_LOG=info")
	out, err := s.cmd.StdoutPipe()
	if err != nil {
		t.Fatal(err)
	}
	s.cmd.Stderr = s.cmd.Stdout
	if err := s.cmd.Start(); err != nil {
		t.Fatal(err)
	}
	listening := make(chan struct{})
	go func() {
		defer close(s.readDone)
		scanner := bufio.NewScanner(out)
		announced := false
		for scanner.Scan() {
			line := ansi.ReplaceAllString(scanner.Text(), "")
			s.mu.Lock()
			s.lines = append(s.lines, line)
			if !announced {
				if m := grpcAddr.FindStringSubmatch(line); m != nil {
					s.Address = m[1]
					if mm := metricsAddr.FindStringSubmatch(line); mm != nil {
						s.MetricsAddress = mm[1]
					}
					announced = true
					close(listening)
				}
			}
			s.mu.Unlock()
		}
		if !announced {
			close(listening)
		}
	}()
	t.Cleanup(func() {
		s.Stop()
		if t.Failed() {
			t.Logf("server log:\n%s", s.Log())
		}
	})
	select {
	case <-listening:
	case <-time.After(30 * time.Second):
	}
	s.mu.Lock()
	address := s.Address
	s.mu.Unlock()
	if address == "" {
		t.Fatalf("server did not report grpc_addr; its output:\n%s", s.Log())
	}
	client, err := switchboard.Connect(address, cfg)
	if err != nil {
		t.Fatal(err)
	}
	s.Client = client
	ctx, cancel := context.WithTimeout(context.Background(), 15*time.Second)
	defer cancel()
	if err := client.WaitReady(ctx, ""); err != nil {
		t.Fatal(err)
	}
	return s
}

// Connect is a new client of this server, connected with cfg (closed when the test ends).
func (s *Server) Connect(t testing.TB, cfg switchboard.Config) *switchboard.Client {
	t.Helper()
	client, err := switchboard.Connect(s.Address, cfg)
	if err != nil {
		t.Fatal(err)
	}
	t.Cleanup(func() { _ = client.Close() })
	return client
}

// Log is everything the server printed so far.
func (s *Server) Log() string {
	s.mu.Lock()
	defer s.mu.Unlock()
	return strings.Join(s.lines, "\n")
}

// Stop sends SIGTERM and waits (killing it after 15 s).
func (s *Server) Stop() {
	if s.Client != nil {
		_ = s.Client.Close()
	}
	if s.cmd.ProcessState != nil {
		return
	}
	_ = s.cmd.Process.Signal(syscall.SIGTERM)
	// Read the output to its end (the process exited) before Wait closes the pipe.
	select {
	case <-s.readDone:
	case <-time.After(15 * time.Second):
		_ = s.cmd.Process.Kill()
		<-s.readDone
	}
	_ = s.cmd.Wait()
}

// String names the server for messages.
func (s *Server) String() string { return fmt.Sprintf("switchboard at %s", s.Address) }
