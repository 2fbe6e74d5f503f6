module github.com/switchboard-dev/switchboard/clients/go

// Built and tested in this repository in GOPATH mode against Debian bookworm's packages
// (Go 1.19, grpc 1.33.3, protobuf 1.28.1): see scripts/install-clients.sh. With modules elsewhere,
// `go mod tidy` fills in go.sum and the indirect requirements.
go 1.19

require (
	google.golang.org/grpc v1.33.3
	google.golang.org/protobuf v1.28.1
)
