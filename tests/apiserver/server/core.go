package main

// Stand-ins for core (/api/v1) kinds. A core kind cannot be a CRD: its group is "". The test
// tier installs CRDs for the few core kinds bondnet uses (ConfigMap, Node) in the group
// coreStandInGroup (tests/apiserver/stand-ins.yaml), and this handler serves each of them at
// its core path: /api/v1/[namespaces/NS/]PLURAL[/...] is sent, through the server's full
// handler chain (authentication, authorization, the CRD handler), to
// /apis/coreStandInGroup/v1/..., with `"apiVersion":"v1"` in a JSON request body and
// `"coreStandInGroup/v1"` in the response, watch events included, swapped. Requests may be JSON
// or YAML (apiVersion on a line of its own); the objects are stored
// as the stand-in CRD's schema allows, so validation of core kinds is not Kubernetes' own.

import (
	"bytes"
	"io"
	"net/http"
	"regexp"
	"strconv"
	"strings"

	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apiserver/pkg/endpoints/responsewriter"
)

const coreStandInGroup = "core.stand-in.bondnet.io"

var (
	// "apiVersion": "v1" in JSON, or apiVersion: v1 on a line of YAML, in a request.
	coreVersionJSON = regexp.MustCompile(`("apiVersion"\s*:\s*)"v1"`)
	coreVersionYAML = regexp.MustCompile(`(?m)^(\s*-?\s*apiVersion:\s*)v1\s*$`)
	standInVersion  = []byte(`"` + coreStandInGroup + `/v1"`)
	coreVersion     = []byte(`"v1"`)
)

// standInPlurals maps the plural of every Established stand-in CRD to whether it is namespaced.
func (d *rootDiscovery) standInPlurals() map[string]bool {
	plurals := map[string]bool{}
	crds, err := d.crds.List(labels.Everything())
	if err != nil {
		return plurals
	}
	for _, crd := range crdsOfGroup(crds, coreStandInGroup) {
		plurals[crd.Spec.Names.Plural] = crd.Spec.Scope == "Namespaced"
	}
	return plurals
}

// serveCore forwards a core request to its stand-in, or answers 404.
func (d *rootDiscovery) serveCore(w http.ResponseWriter, req *http.Request) {
	rest := strings.TrimPrefix(req.URL.Path, "/api/v1/")
	parts := strings.Split(rest, "/")
	resource := parts[0]
	if resource == "namespaces" && len(parts) >= 3 {
		resource = parts[2]
	}
	if _, ok := d.standInPlurals()[resource]; !ok || d.full == nil {
		d.notFound.ServeHTTP(w, req)
		return
	}
	forward := req.Clone(req.Context())
	forward.URL.Path = "/apis/" + coreStandInGroup + "/v1/" + rest
	forward.URL.RawPath = ""
	forward.RequestURI = forward.URL.RequestURI()
	forward.Header.Del("Accept-Encoding")
	if req.Body != nil && req.Body != http.NoBody {
		body, err := io.ReadAll(req.Body)
		if err != nil {
			http.Error(w, err.Error(), http.StatusBadRequest)
			return
		}
		body = coreVersionJSON.ReplaceAll(body, []byte(`${1}"`+coreStandInGroup+`/v1"`))
		body = coreVersionYAML.ReplaceAll(body, []byte(`${1}`+coreStandInGroup+`/v1`))
		forward.Body = io.NopCloser(bytes.NewReader(body))
		forward.ContentLength = int64(len(body))
		forward.Header.Set("Content-Length", strconv.Itoa(len(body)))
	}
	// Wrapped so that watches still find the connection's Flusher and CloseNotifier.
	d.full.ServeHTTP(responsewriter.WrapForHTTP1Or2(&coreWriter{ResponseWriter: w}), forward)
}

// coreWriter swaps the stand-in apiVersion back to "v1" in everything written, one Write at a
// time (the server writes each watch event in one Write).
type coreWriter struct {
	http.ResponseWriter
	wroteHeader bool
}

func (c *coreWriter) WriteHeader(code int) {
	c.wroteHeader = true
	c.Header().Del("Content-Length")
	c.ResponseWriter.WriteHeader(code)
}

func (c *coreWriter) Write(p []byte) (int, error) {
	if !c.wroteHeader {
		c.WriteHeader(http.StatusOK)
	}
	if _, err := c.ResponseWriter.Write(bytes.ReplaceAll(p, standInVersion, coreVersion)); err != nil {
		return 0, err
	}
	return len(p), nil
}

func (c *coreWriter) Flush() {
	if f, ok := c.ResponseWriter.(http.Flusher); ok {
		f.Flush()
	}
}

func (c *coreWriter) Unwrap() http.ResponseWriter { return c.ResponseWriter }
