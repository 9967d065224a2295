// The Go reference for bench/bench.py: the same aggregation gatherd does, written the way a
// Go service usually is, with the standard library only. One shared http.Client with a
// keep-alive transport sized for the load; per request a goroutine per upstream, each body
// checked with json.Valid and spliced in as a json.RawMessage, in upstream order; a failed or
// non-200 leg becomes {} in results and an entry in errors, as gatherd answers.
//
//	refgo -listen 127.0.0.1:18084 -path /agg -idle 256 -timeout 10s name=URL [name=URL ...]
//
// Built by bench.py at bench time (go build, GOCACHE under its temporary folder, no network).
package main

import (
	"encoding/json"
	"errors"
	"flag"
	"fmt"
	"io"
	"log"
	"net"
	"net/http"
	"os"
	"strings"
	"sync"
	"time"
)

const maxBody = 1 << 20

type backend struct {
	name, url string
}

type legError struct {
	Index   int    `json:"index"`
	Name    string `json:"name"`
	Error   string `json:"error"`
	Status  int    `json:"status,omitempty"`
	Message string `json:"message"`
}

type answer struct {
	Results []json.RawMessage `json:"results"`
	Errors  []legError        `json:"errors"`
}

var empty = json.RawMessage("{}")

func kind(err error) string {
	var ne net.Error
	if errors.As(err, &ne) && ne.Timeout() {
		return "timeout"
	}
	var oe *net.OpError
	if errors.As(err, &oe) && oe.Op == "dial" {
		return "connect"
	}
	return "transfer"
}

func fetch(client *http.Client, b backend) (json.RawMessage, *legError) {
	resp, err := client.Get(b.url)
	if err != nil {
		return nil, &legError{Error: kind(err), Message: err.Error()}
	}
	defer resp.Body.Close()
	body, err := io.ReadAll(io.LimitReader(resp.Body, maxBody+1))
	if err != nil {
		return nil, &legError{Error: kind(err), Message: err.Error()}
	}
	if resp.StatusCode != http.StatusOK {
		return nil, &legError{Error: "http_status", Status: resp.StatusCode,
			Message: fmt.Sprintf("upstream answered %d", resp.StatusCode)}
	}
	if len(body) > maxBody {
		return nil, &legError{Error: "too_large", Message: "upstream body too large"}
	}
	if !json.Valid(body) {
		return nil, &legError{Error: "invalid_json", Message: "upstream body is not JSON"}
	}
	return json.RawMessage(body), nil
}

func main() {
	listen := flag.String("listen", "127.0.0.1:18084", "address to serve on")
	path := flag.String("path", "/agg", "aggregate endpoint")
	idle := flag.Int("idle", 256, "idle keep-alive connections kept per upstream host")
	timeout := flag.Duration("timeout", 10*time.Second, "whole-request timeout of each leg")
	flag.Parse()
	var backends []backend
	for _, a := range flag.Args() {
		name, url, ok := strings.Cut(a, "=")
		if !ok {
			log.Fatalf("backend %q: want name=URL", a)
		}
		backends = append(backends, backend{name, url})
	}
	if len(backends) == 0 {
		log.Fatal("no backends")
	}
	client := &http.Client{
		Timeout: *timeout,
		Transport: &http.Transport{
			DialContext:         (&net.Dialer{Timeout: *timeout, KeepAlive: 30 * time.Second}).DialContext,
			MaxIdleConns:        *idle * len(backends),
			MaxIdleConnsPerHost: *idle,
			IdleConnTimeout:     300 * time.Second,
			DisableCompression:  true,
			ForceAttemptHTTP2:   false,
		},
	}
	mux := http.NewServeMux()
	mux.HandleFunc(*path, func(w http.ResponseWriter, r *http.Request) {
		ans := answer{Results: make([]json.RawMessage, len(backends)), Errors: []legError{}}
		errs := make([]*legError, len(backends))
		var wg sync.WaitGroup
		for i, b := range backends {
			wg.Add(1)
			go func(i int, b backend) {
				defer wg.Done()
				ans.Results[i], errs[i] = fetch(client, b)
			}(i, b)
		}
		wg.Wait()
		ok := 0
		for i, e := range errs {
			if e != nil {
				e.Index, e.Name = i, backends[i].name
				ans.Results[i] = empty
				ans.Errors = append(ans.Errors, *e)
			} else {
				ok++
			}
		}
		out, err := json.Marshal(ans)
		if err != nil {
			http.Error(w, err.Error(), http.StatusInternalServerError)
			return
		}
		w.Header().Set("Content-Type", "application/json")
		if ok == 0 {
			w.WriteHeader(http.StatusBadGateway)
		}
		w.Write(out)
	})
	mux.HandleFunc("/healthz", func(w http.ResponseWriter, r *http.Request) {
		w.Write([]byte("ok\n"))
	})
	srv := &http.Server{Addr: *listen, Handler: mux, IdleTimeout: 300 * time.Second}
	fmt.Fprintf(os.Stderr, "refgo: %d backends on %s%s\n", len(backends), *listen, *path)
	log.Fatal(srv.ListenAndServe())
}
