// Command psacheck evaluates every Pod template in rendered Kubernetes manifests against the Pod Security
// Standards "restricted" profile (latest version), with the same library the kube-apiserver's Pod Security
// Admission plugin uses (k8s.io/pod-security-admission).
//
//	psacheck rendered.yaml [more.yaml ...]
//
// Exit status 0 when every Pod template is allowed, 1 when any is forbidden (each violation is printed),
// 2 on a usage or parse error. A file with no Pod template at all is an error: a check that sees nothing
// must not pass.
package main

import (
	"bufio"
	"bytes"
	"errors"
	"fmt"
	"io"
	"os"

	corev1 "k8s.io/api/core/v1"
	metav1 "k8s.io/apimachinery/pkg/apis/meta/v1"
	"k8s.io/apimachinery/pkg/util/yaml"
	"k8s.io/pod-security-admission/api"
	"k8s.io/pod-security-admission/policy"
	sigsyaml "sigs.k8s.io/yaml"
)

// podHolder covers the kinds that carry a Pod spec: Pod itself, and the workload kinds whose
// spec.template (Deployment, StatefulSet, DaemonSet, ReplicaSet, Job) or spec.jobTemplate.spec.template
// (CronJob) is a PodTemplateSpec.
type podHolder struct {
	Kind     string            `json:"kind"`
	Metadata metav1.ObjectMeta `json:"metadata"`
	Spec     struct {
		corev1.PodSpec
		Template *struct {
			Metadata metav1.ObjectMeta `json:"metadata"`
			Spec     corev1.PodSpec    `json:"spec"`
		} `json:"template"`
		JobTemplate *struct {
			Spec struct {
				Template struct {
					Metadata metav1.ObjectMeta `json:"metadata"`
					Spec     corev1.PodSpec    `json:"spec"`
				} `json:"template"`
			} `json:"spec"`
		} `json:"jobTemplate"`
	} `json:"spec"`
}

var podKinds = map[string]bool{
	"Pod": true, "Deployment": true, "StatefulSet": true, "DaemonSet": true,
	"ReplicaSet": true, "Job": true, "CronJob": true, "ReplicationController": true,
}

func main() {
	if len(os.Args) < 2 {
		fmt.Fprintln(os.Stderr, "usage: psacheck FILE.yaml [FILE.yaml ...]")
		os.Exit(2)
	}
	evaluator, err := policy.NewEvaluator(policy.DefaultChecks(), nil)
	if err != nil {
		fmt.Fprintln(os.Stderr, "psacheck:", err)
		os.Exit(2)
	}
	level := api.LevelVersion{Level: api.LevelRestricted, Version: api.LatestVersion()}
	failed := false
	for _, path := range os.Args[1:] {
		data, err := os.ReadFile(path)
		if err != nil {
			fmt.Fprintln(os.Stderr, "psacheck:", err)
			os.Exit(2)
		}
		checked := 0
		decoder := yaml.NewYAMLReader(bufio.NewReader(bytes.NewReader(data)))
		for {
			doc, err := decoder.Read()
			if errors.Is(err, io.EOF) {
				break
			}
			if err != nil {
				fmt.Fprintf(os.Stderr, "psacheck: %s: %v\n", path, err)
				os.Exit(2)
			}
			if len(bytes.TrimSpace(doc)) == 0 {
				continue
			}
			var obj podHolder
			if err := sigsyaml.Unmarshal(doc, &obj); err != nil {
				fmt.Fprintf(os.Stderr, "psacheck: %s: %v\n", path, err)
				os.Exit(2)
			}
			if !podKinds[obj.Kind] {
				continue
			}
			meta, spec := &obj.Metadata, &obj.Spec.PodSpec
			switch {
			case obj.Spec.Template != nil:
				meta, spec = &obj.Spec.Template.Metadata, &obj.Spec.Template.Spec
			case obj.Spec.JobTemplate != nil:
				meta, spec = &obj.Spec.JobTemplate.Spec.Template.Metadata, &obj.Spec.JobTemplate.Spec.Template.Spec
			}
			checked++
			name := fmt.Sprintf("%s/%s", obj.Kind, obj.Metadata.Name)
			for _, result := range evaluator.EvaluatePod(level, meta, spec) {
				if !result.Allowed {
					failed = true
					fmt.Printf("%s: %s: FORBIDDEN by restricted:%s: %s (%s)\n",
						path, name, api.LatestVersion().String(), result.ForbiddenReason, result.ForbiddenDetail)
				}
			}
		}
		if checked == 0 {
			fmt.Fprintf(os.Stderr, "psacheck: %s: no Pod template found\n", path)
			os.Exit(2)
		}
		fmt.Printf("%s: %d pod template(s) checked against restricted:%s\n", path, checked, api.LatestVersion().String())
	}
	if failed {
		os.Exit(1)
	}
}
