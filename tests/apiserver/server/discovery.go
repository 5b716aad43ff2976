package main

// Discovery for a server that runs without kube-aggregator. Upstream, the apiextensions server
// turns its own /apis off (EnableDiscovery = false) because kube-aggregator serves the root
// documents for every group; here nothing else would, so clients (kube-rs's Discovery,
// client-go's discovery) would find nothing. This handler is the server's "not found" delegate,
// so it sees only paths that nothing else served, after authentication and authorization:
//
//   - /apis: the APIGroupList of the built-in groups plus every Established CRD's group, or,
//     when the client asks for it, the aggregated document the upstream server already keeps;
//   - /api and /api/v1: the core group, listing only the core stand-ins (core.go);
//   - /api/v1/...: the core stand-ins (core.go);
//   - anything else: 404, as before.
//
// While the server is still installing its paths and syncing CRDs (the "mux and discovery
// complete" signal has not fired), every request here gets 503 "try again", as kube-apiserver
// answers in that window, instead of a 404 that would tell a client its resource is gone.

import (
	"encoding/json"
	"net/http"
	"sort"
	"strings"

	"k8s.io/apiextensions-apiserver/pkg/apihelpers"
	apiextensionsv1 "k8s.io/apiextensions-apiserver/pkg/apis/apiextensions/v1"
	listers "k8s.io/apiextensions-apiserver/pkg/client/listers/apiextensions/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/labels"
	"k8s.io/apimachinery/pkg/version"
	"k8s.io/apiserver/pkg/endpoints/discovery"
	discoveryendpoint "k8s.io/apiserver/pkg/endpoints/discovery/aggregated"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
)

type rootDiscovery struct {
	notFound   http.Handler
	builtin    discovery.GroupLister
	crds       listers.CustomResourceDefinitionLister
	aggregated http.Handler // nil until the server exists
	full       http.Handler // the server's whole handler chain, for core stand-ins
}

func (d *rootDiscovery) ServeHTTP(w http.ResponseWriter, req *http.Request) {
	if !genericapifilters.NoMuxAndDiscoveryIncompleteKey(req.Context()) {
		d.notFound.ServeHTTP(w, req) // 503 until the server is complete
		return
	}
	switch req.URL.Path {
	case "/apis", "/apis/":
		if d.aggregated == nil || d.crds == nil {
			http.Error(w, "discovery is not ready", http.StatusServiceUnavailable)
			return
		}
		legacy := http.HandlerFunc(d.serveGroups)
		discoveryendpoint.WrapAggregatedDiscoveryToHandler(legacy, d.aggregated, nil).ServeHTTP(w, req)
	case "/api", "/api/":
		writeJSON(w, &metav1.APIVersions{
			TypeMeta: metav1.TypeMeta{Kind: "APIVersions", APIVersion: "v1"},
			Versions: []string{"v1"},
		})
	case "/api/v1", "/api/v1/":
		resources := []metav1.APIResource{}
		for plural, namespaced := range d.standInPlurals() {
			resources = append(resources, d.coreResource(plural, namespaced))
		}
		sort.Slice(resources, func(i, j int) bool { return resources[i].Name < resources[j].Name })
		writeJSON(w, &metav1.APIResourceList{
			TypeMeta:     metav1.TypeMeta{Kind: "APIResourceList", APIVersion: "v1"},
			GroupVersion: "v1",
			APIResources: resources,
		})
	default:
		if strings.HasPrefix(req.URL.Path, "/api/v1/") {
			d.serveCore(w, req)
			return
		}
		d.notFound.ServeHTTP(w, req)
	}
}

// coreResource describes a core stand-in as core discovery lists it.
func (d *rootDiscovery) coreResource(plural string, namespaced bool) metav1.APIResource {
	r := metav1.APIResource{
		Name:       plural,
		Namespaced: namespaced,
		Verbs:      metav1.Verbs{"create", "delete", "deletecollection", "get", "list", "patch", "update", "watch"},
	}
	crds, err := d.crds.List(labels.Everything())
	if err == nil {
		for _, crd := range crdsOfGroup(crds, coreStandInGroup) {
			if crd.Spec.Names.Plural == plural {
				r.Kind = crd.Spec.Names.Kind
				r.SingularName = crd.Spec.Names.Singular
			}
		}
	}
	return r
}

// crdsOfGroup filters the Established CRDs of one group.
func crdsOfGroup(crds []*apiextensionsv1.CustomResourceDefinition, group string) []*apiextensionsv1.CustomResourceDefinition {
	var out []*apiextensionsv1.CustomResourceDefinition
	for _, crd := range crds {
		if crd.Spec.Group == group && apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) {
			out = append(out, crd)
		}
	}
	return out
}

// serveGroups writes the unaggregated APIGroupList.
func (d *rootDiscovery) serveGroups(w http.ResponseWriter, req *http.Request) {
	groups, err := d.builtin.Groups(req.Context(), req)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	crds, err := d.crds.List(labels.Everything())
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	writeJSON(w, &metav1.APIGroupList{
		TypeMeta: metav1.TypeMeta{Kind: "APIGroupList", APIVersion: "v1"},
		Groups:   append(groups, crdGroups(crds)...),
	})
}

// crdGroups lists the groups of the Established CRDs, each with its served versions in
// Kubernetes' version priority (v2, v1, v1beta1, v1alpha1), the first preferred.
func crdGroups(crds []*apiextensionsv1.CustomResourceDefinition) []metav1.APIGroup {
	versions := map[string]map[string]bool{}
	for _, crd := range crds {
		if !apihelpers.IsCRDConditionTrue(crd, apiextensionsv1.Established) || crd.Spec.Group == coreStandInGroup {
			continue
		}
		for _, v := range crd.Spec.Versions {
			if !v.Served {
				continue
			}
			if versions[crd.Spec.Group] == nil {
				versions[crd.Spec.Group] = map[string]bool{}
			}
			versions[crd.Spec.Group][v.Name] = true
		}
	}
	names := make([]string, 0, len(versions))
	for g := range versions {
		names = append(names, g)
	}
	sort.Strings(names)
	groups := make([]metav1.APIGroup, 0, len(names))
	for _, g := range names {
		vs := make([]string, 0, len(versions[g]))
		for v := range versions[g] {
			vs = append(vs, v)
		}
		sort.Slice(vs, func(i, j int) bool { return version.CompareKubeAwareVersionStrings(vs[i], vs[j]) > 0 })
		group := metav1.APIGroup{Name: g}
		for _, v := range vs {
			group.Versions = append(group.Versions, metav1.GroupVersionForDiscovery{GroupVersion: g + "/" + v, Version: v})
		}
		group.PreferredVersion = group.Versions[0]
		groups = append(groups, group)
	}
	return groups
}

func writeJSON(w http.ResponseWriter, v any) {
	body, err := json.Marshal(v)
	if err != nil {
		http.Error(w, err.Error(), http.StatusInternalServerError)
		return
	}
	w.Header().Set("Content-Type", "application/json")
	_, _ = w.Write(body)
}
