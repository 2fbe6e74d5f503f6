package switchboard

import (
	"context"
	"crypto/tls"
	"crypto/x509"
	"errors"
	"fmt"
	"os"
	"strings"

	"google.golang.org/grpc"
	"google.golang.org/grpc/credentials"
)

// Config says how to reach a server: credentials, TLS, retries. The zero value is a plaintext
// connection without a token and with the default retries.
type Config struct {
	// Token is a bearer token (from `switchboard token issue`), sent as "authorization: Bearer
	// <token>" on every call. Over a plaintext connection it travels in clear: use TLS off loopback.
	Token string
	// CallerID is sent as x-caller-id: the caller's name for per-caller limits (the Assign rate
	// limit) when the server does not take it from a token or a client certificate.
	CallerID string
	// TLS is on when TLS is set (the system's roots), TLSCA is set (a PEM file with the CA that
	// signed the server's certificate) or TLSCert and TLSKey are (PEM files of a client
	// certificate and its key, for mutual TLS). TLSServerName overrides the name checked in the
	// server's certificate (default: the address's host).
	TLS                                   bool
	TLSCA, TLSCert, TLSKey, TLSServerName string
	// Retry bounds the retries of RESOURCE_EXHAUSTED and UNAVAILABLE (see RetryPolicy); the zero
	// value is the default (5 retries), NoRetry turns them off.
	Retry RetryPolicy
	// DialOptions are added last (they may add interceptors, keepalive settings, ...).
	DialOptions []grpc.DialOption
}

// Connect connects to a Switchboard server at address (host:port) as cfg says. The connection is
// made lazily; use WaitReady to wait for the server. Certificate files are read here.
func Connect(address string, cfg Config) (*Client, error) {
	transport, err := cfg.transportCredentials()
	if err != nil {
		return nil, err
	}
	opts := []grpc.DialOption{transport}
	if metadata := cfg.metadata(); len(metadata) > 0 {
		opts = append(opts, grpc.WithPerRPCCredentials(callMetadata(metadata)))
	}
	if cfg.Retry.MaxRetries >= 0 {
		opts = append(opts, grpc.WithChainUnaryInterceptor(retryInterceptor(cfg.Retry)))
	}
	conn, err := grpc.Dial(address, append(opts, cfg.DialOptions...)...)
	if err != nil {
		return nil, err
	}
	return NewClient(conn), nil
}

func (cfg Config) transportCredentials() (grpc.DialOption, error) {
	if (cfg.TLSCert == "") != (cfg.TLSKey == "") {
		return nil, errors.New("switchboard: TLSCert and TLSKey go together (the client certificate and its private key)")
	}
	if !cfg.TLS && cfg.TLSCA == "" && cfg.TLSCert == "" {
		return grpc.WithInsecure(), nil
	}
	config := &tls.Config{ServerName: cfg.TLSServerName, MinVersion: tls.VersionTLS12}
	if cfg.TLSCA != "" {
		pem, err := os.ReadFile(cfg.TLSCA)
		if err != nil {
			return nil, fmt.Errorf("switchboard: TLS CA: %w", err)
		}
		config.RootCAs = x509.NewCertPool()
		if !config.RootCAs.AppendCertsFromPEM(pem) {
			return nil, fmt.Errorf("switchboard: TLS CA: no PEM certificate in %s", cfg.TLSCA)
		}
	}
	if cfg.TLSCert != "" {
		certificate, err := tls.LoadX509KeyPair(cfg.TLSCert, cfg.TLSKey)
		if err != nil {
			return nil, fmt.Errorf("switchboard: TLS client certificate: %w", err)
		}
		config.Certificates = []tls.Certificate{certificate}
	}
	return grpc.WithTransportCredentials(credentials.NewTLS(config)), nil
}

func (cfg Config) metadata() map[string]string {
	metadata := map[string]string{}
	if token := strings.TrimSpace(cfg.Token); token != "" {
		metadata["authorization"] = "Bearer " + token
	}
	if cfg.CallerID != "" {
		metadata["x-caller-id"] = cfg.CallerID
	}
	return metadata
}

// callMetadata sends fixed metadata (the bearer token, the caller id) with every call. It does not
// require transport security, so a token also goes over plaintext (loopback, or a TLS-terminating
// proxy in front of the server): the choice is the caller's, by Config.
type callMetadata map[string]string

func (m callMetadata) GetRequestMetadata(context.Context, ...string) (map[string]string, error) {
	return m, nil
}

func (callMetadata) RequireTransportSecurity() bool { return false }
