// Command bondnet-apiserver is the CRD-only Kubernetes API server of bondnet's real-API-server
// test tier: k8s.io/apiextensions-apiserver, started the way its own main starts it, minus the
// parts that need a core Kubernetes API this server does not serve (Namespaces, Services,
// FlowSchemas, the authentication ConfigMap):
//
//   - no admission plugins (NamespaceLifecycle would wait forever for a Namespace informer);
//   - no API priority and fairness (it needs a core client);
//   - authentication by client certificate only (--client-ca-file), no delegation, no anonymous;
//   - authorization: members of system:masters may do anything, everyone else nothing;
//   - conversion webhooks cannot resolve a Service (there are none to resolve);
//   - root discovery (/apis, /api), which kube-aggregator serves upstream (discovery.go);
//   - core kinds that bondnet uses (ConfigMap, Node) are served from stand-in CRDs (core.go).
//
// Every other flag of the upstream server (--etcd-servers, --secure-port, --tls-cert-file, ...)
// works as there. Everything that is served (CRDs, custom resources, validation, CEL, defaulting,
// server-side apply, watch, finalizers) is the upstream code, unchanged.
package main

import (
	"context"
	goflag "flag"
	"fmt"
	"net/url"
	"os"

	"github.com/spf13/pflag"
	noopoteltrace "go.opentelemetry.io/otel/trace/noop"

	"k8s.io/apiextensions-apiserver/pkg/apiserver"
	"k8s.io/apiextensions-apiserver/pkg/cmd/server/options"
	generatedopenapi "k8s.io/apiextensions-apiserver/pkg/generated/openapi"
	apiserverconfig "k8s.io/apiserver/pkg/apis/apiserver"
	"k8s.io/apiserver/pkg/authentication/user"
	"k8s.io/apiserver/pkg/authorization/authorizer"
	genericapifilters "k8s.io/apiserver/pkg/endpoints/filters"
	openapinamer "k8s.io/apiserver/pkg/endpoints/openapi"
	genericapiserver "k8s.io/apiserver/pkg/server"
	"k8s.io/apiserver/pkg/util/notfoundhandler"
	"k8s.io/apiserver/pkg/util/openapi"
	"k8s.io/apiserver/pkg/util/webhook"
	"k8s.io/client-go/kubernetes/scheme"
	"k8s.io/klog/v2"
)

func main() {
	if err := run(genericapiserver.SetupSignalContext(), os.Args[1:]); err != nil {
		fmt.Fprintln(os.Stderr, "bondnet-apiserver:", err)
		os.Exit(1)
	}
}

func run(ctx context.Context, args []string) error {
	o := options.NewCustomResourceDefinitionsServerOptions(os.Stdout, os.Stderr)
	ro := o.RecommendedOptions
	ro.CoreAPI = nil
	ro.Admission = nil
	ro.Authorization = nil
	ro.Features.EnablePriorityAndFairness = false
	ro.Authentication.RemoteKubeConfigFileOptional = true
	ro.Authentication.SkipInClusterLookup = true
	ro.Authentication.Anonymous = &apiserverconfig.AnonymousAuthConfig{Enabled: false}

	fs := pflag.NewFlagSet("bondnet-apiserver", pflag.ContinueOnError)
	o.AddFlags(fs)
	klogFlags := goflag.NewFlagSet("klog", goflag.ContinueOnError)
	klog.InitFlags(klogFlags)
	fs.AddGoFlagSet(klogFlags)
	if err := fs.Parse(args); err != nil {
		return err
	}
	if err := o.ServerRunOptions.ComponentGlobalsRegistry.Set(); err != nil {
		return err
	}
	if err := o.Complete(); err != nil {
		return err
	}
	if err := o.Validate(); err != nil {
		return err
	}
	config, err := serverConfig(o)
	if err != nil {
		return err
	}
	root := &rootDiscovery{notFound: notfoundhandler.New(apiserver.Codecs, genericapifilters.NoMuxAndDiscoveryIncompleteKey)}
	server, err := config.Complete().New(genericapiserver.NewEmptyDelegateWithCustomHandler(root))
	if err != nil {
		return err
	}
	root.builtin = server.GenericAPIServer.DiscoveryGroupManager
	root.crds = server.Informers.Apiextensions().V1().CustomResourceDefinitions().Lister()
	root.aggregated = server.GenericAPIServer.AggregatedDiscoveryGroupManager
	root.full = server.GenericAPIServer.Handler
	return server.GenericAPIServer.PrepareRun().RunWithContext(ctx)
}

// serverConfig is options.Config without the Service lister (there is no core API to list from)
// and with the masters-only authorizer.
func serverConfig(o *options.CustomResourceDefinitionsServerOptions) (*apiserver.Config, error) {
	generic := genericapiserver.NewRecommendedConfig(apiserver.Codecs)
	if err := o.ServerRunOptions.ApplyTo(&generic.Config); err != nil {
		return nil, err
	}
	if err := o.RecommendedOptions.ApplyTo(generic); err != nil {
		return nil, err
	}
	if err := o.APIEnablement.ApplyTo(&generic.Config, apiserver.DefaultAPIResourceConfigSource(), apiserver.Scheme); err != nil {
		return nil, err
	}
	generic.Authorization.Authorizer = mastersOnly{}
	generic.OpenAPIV3Config = genericapiserver.DefaultOpenAPIV3Config(
		openapi.GetOpenAPIDefinitionsWithoutDisabledFeatures(generatedopenapi.GetOpenAPIDefinitions),
		openapinamer.NewDefinitionNamer(apiserver.Scheme, scheme.Scheme),
	)
	return &apiserver.Config{
		GenericConfig: generic,
		ExtraConfig: apiserver.ExtraConfig{
			CRDRESTOptionsGetter: options.NewCRDRESTOptionsGetter(*o.RecommendedOptions.Etcd, generic.ResourceTransformers, generic.StorageObjectCountTracker),
			ServiceResolver:      noServices{},
			AuthResolverWrapper:  webhook.NewDefaultAuthenticationInfoResolverWrapper(nil, nil, generic.LoopbackClientConfig, noopoteltrace.NewTracerProvider()),
		},
	}, nil
}

// mastersOnly allows every request of a member of system:masters (the test's client certificate
// and the server's own loopback client) and no other.
type mastersOnly struct{}

func (mastersOnly) Authorize(_ context.Context, a authorizer.Attributes) (authorizer.Decision, string, error) {
	if u := a.GetUser(); u != nil {
		for _, g := range u.GetGroups() {
			if g == user.SystemPrivilegedGroup {
				return authorizer.DecisionAllow, "", nil
			}
		}
	}
	return authorizer.DecisionDeny, "only system:masters may use this test server", nil
}

// noServices resolves no Service: the server has no core API, so no conversion webhook can run.
type noServices struct{}

func (noServices) ResolveEndpoint(namespace, name string, _ int32) (*url.URL, error) {
	return nil, fmt.Errorf("service %s/%s: this CRD-only server serves no Services", namespace, name)
}
