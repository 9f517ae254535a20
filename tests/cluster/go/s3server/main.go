// Command s3server is the tests' S3-compatible object store: gofakes3 (the fork rclone
// serves S3 with) over an in-memory backend, checking every request's AWS Signature V4
// against the credentials it is given. An identity marked read-only may only read
// (GET, HEAD), as a model's download credentials should. Built by
// tests/cluster/build.sh; it prints its listening address on stdout once serving.
package main

import (
	"encoding/json"
	"flag"
	"fmt"
	"log"
	"net"
	"net/http"
	"os"
	"regexp"
	"runtime/debug"

	"github.com/rclone/gofakes3"
	"github.com/rclone/gofakes3/s3mem"
)

type identity struct {
	AccessKey string `json:"accessKey"`
	SecretKey string `json:"secretKey"`
	ReadOnly  bool   `json:"readOnly"`
}

// The access key of a signed request: its Authorization header, or a presigned URL's.
var credential = regexp.MustCompile(`Credential=([^/,\s]+)/`)

func accessKey(r *http.Request) string {
	if m := credential.FindStringSubmatch(r.Header.Get("Authorization")); m != nil {
		return m[1]
	}
	if c := r.URL.Query().Get("X-Amz-Credential"); c != "" {
		if m := credential.FindStringSubmatch("Credential=" + c); m != nil {
			return m[1]
		}
	}
	return ""
}

const accessDenied = `<?xml version="1.0" encoding="UTF-8"?>
<Error><Code>AccessDenied</Code><Message>Access Denied: this identity may only read</Message></Error>`

func readOnly(next http.Handler, readers map[string]bool) http.Handler {
	return http.HandlerFunc(func(w http.ResponseWriter, r *http.Request) {
		if readers[accessKey(r)] && r.Method != http.MethodGet && r.Method != http.MethodHead {
			w.Header().Set("Content-Type", "application/xml")
			w.WriteHeader(http.StatusForbidden)
			_, _ = w.Write([]byte(accessDenied))
			return
		}
		next.ServeHTTP(w, r)
	})
}

// The gofakes3 module version linked in, for build.sh's check of the pin.
func gofakes3Version() string {
	if info, ok := debug.ReadBuildInfo(); ok {
		for _, dep := range info.Deps {
			if dep.Path == "github.com/rclone/gofakes3" {
				return dep.Version
			}
		}
	}
	return "unknown"
}

func main() {
	addr := flag.String("addr", "127.0.0.1:0", "address to listen on")
	file := flag.String("credentials", "", `JSON file: [{"accessKey": …, "secretKey": …, "readOnly": bool}]`)
	cert := flag.String("tls-cert", "", "serve HTTPS with this certificate (PEM) and -tls-key")
	key := flag.String("tls-key", "", "the certificate's private key (PEM)")
	version := flag.Bool("version", false, "print the gofakes3 version and exit")
	flag.Parse()
	if *version {
		fmt.Printf("s3server (gofakes3 %s)\n", gofakes3Version())
		return
	}
	raw, err := os.ReadFile(*file)
	if err != nil {
		log.Fatalf("s3server: -credentials: %v", err)
	}
	var identities []identity
	if err := json.Unmarshal(raw, &identities); err != nil || len(identities) == 0 {
		log.Fatalf("s3server: -credentials: need a JSON list of identities (%v)", err)
	}
	keys := map[string]string{}
	readers := map[string]bool{}
	for _, id := range identities {
		keys[id.AccessKey] = id.SecretKey
		readers[id.AccessKey] = id.ReadOnly
	}
	logger := gofakes3.StdLog(log.New(os.Stderr, "s3server ", log.LstdFlags), gofakes3.LogErr, gofakes3.LogWarn)
	store := gofakes3.New(s3mem.New(), gofakes3.WithV4Auth(keys), gofakes3.WithLogger(logger))
	listener, err := net.Listen("tcp", *addr)
	if err != nil {
		log.Fatalf("s3server: %v", err)
	}
	fmt.Println(listener.Addr().String())
	handler := readOnly(store.Server(), readers)
	if *cert != "" {
		log.Fatal(http.ServeTLS(listener, handler, *cert, *key))
	}
	log.Fatal(http.Serve(listener, handler))
}
