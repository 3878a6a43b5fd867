# veritee default attestation policy for CPU-class evidence (policy id "default_cpu").
#
# input: the claims of one device as the verifier produced them, under the
# TEE's name (input.tdx, input.sgx, input.snp, input.sample, input["az-snp-vtpm"],
# input["az-tdx-vtpm"]), next to report_data, runtime_data_claims, init_data and
# init_data_claims.
#
# output: trust_claims, an AR4SI trustworthiness vector, and extensions, the EAR
# members to add to the appraisal.
#
# Reference values come from query_reference_value(<name>), which returns what
# was registered under <name> (usually an array of accepted values) or null.
#
# Without any reference value a genuine, up-to-date, non-debug TEE gets
# executables 33 and so the status "warning"; once its launch measurement is
# registered it becomes "affirming".
package policy

import rego.v1

# AR4SI values used below:
#   executables    3 approved boot, 33 unrecognized runtime
#   hardware       2 genuine, 32 genuine with known vulnerabilities, 97 unrecognized
#   configuration  2 approved, 36 unavailable, 96 unacceptable (debug)
default executables := 33

default hardware := 97

default configuration := 36

default file_system := 0

default instance_identity := 0

default runtime_opaque := 0

default storage_opaque := 0

default sourced_data := 0

trust_claims := {
	"instance-identity": instance_identity,
	"configuration": configuration,
	"executables": executables,
	"file-system": file_system,
	"hardware": hardware,
	"runtime-opaque": runtime_opaque,
	"storage-opaque": storage_opaque,
	"sourced-data": sourced_data,
}

# ----------------------------------------------------------------- helpers

# Which TEE produced the input (one per input).
platform := "tdx" if {
	input.tdx
} else := "az-tdx-vtpm" if {
	input["az-tdx-vtpm"]
} else := "sgx" if {
	input.sgx
} else := "snp" if {
	input.snp
} else := "az-snp-vtpm" if {
	input["az-snp-vtpm"]
} else := "sample" if {
	input.sample
}

# Each platform's claims, through static paths only: the engine may then leave
# out of the input what this policy never reads (the CC event log).
evidence := input.tdx if platform == "tdx"

evidence := input["az-tdx-vtpm"] if platform == "az-tdx-vtpm"

evidence := input.sgx if platform == "sgx"

evidence := input.snp if platform == "snp"

evidence := input["az-snp-vtpm"] if platform == "az-snp-vtpm"

evidence := input.sample if platform == "sample"

intel_tdx_platforms := {"tdx", "az-tdx-vtpm"}

amd_snp_platforms := {"snp", "az-snp-vtpm"}

# Platforms whose verifier reports no TCB level ("NotApplicable"): the SNP
# verifier checks the reported TCB through the VCEK chain itself.
unrated_platforms := {"snp", "az-snp-vtpm", "sample"}

intel_qe_vendor_id := "939a7233f79c4ca9940a0db3957f0607"

# A claim value is accepted when it is one of the registered values, or equals
# a registered scalar.
accepted(value, name) if {
	value != null
	value in query_reference_value(name)
}

accepted(value, name) if {
	value != null
	value == query_reference_value(name)
}

# ----------------------------------------------------------------- hardware

genuine if {
	platform in intel_tdx_platforms
	evidence.quote.header.tee_type == "81000000"
	evidence.quote.header.vendor_id == intel_qe_vendor_id
}

genuine if {
	platform == "sgx"
	evidence.header.vendor_id == intel_qe_vendor_id
}

genuine if {
	platform in amd_snp_platforms
	is_string(evidence.measurement)
}

genuine if {
	platform == "sample"
}

fallback_tcb_status := "NotApplicable" if {
	platform in unrated_platforms
} else := "Unknown"

tcb_status := object.get(evidence, "tcb_status", fallback_tcb_status)

tcb_current if tcb_status == "UpToDate"

tcb_current if {
	tcb_status == "NotApplicable"
	platform in unrated_platforms
}

tcb_vulnerable_statuses := {
	"OutOfDate",
	"SWHardeningNeeded",
	"ConfigurationNeeded",
	"ConfigurationAndSWHardeningNeeded",
	"OutOfDateConfigurationNeeded",
}

hardware := 2 if {
	genuine
	tcb_current
}

hardware := 32 if {
	genuine
	tcb_status in tcb_vulnerable_statuses
}

# -------------------------------------------------------------- executables

launch_recognized if {
	platform in intel_tdx_platforms
	accepted(evidence.quote.body.mr_td, "mr_td")
}

launch_recognized if {
	platform in intel_tdx_platforms
	accepted(evidence.quote.body.rtmr_1, "rtmr_1")
	accepted(evidence.quote.body.rtmr_2, "rtmr_2")
}

launch_recognized if {
	platform == "az-tdx-vtpm"
	accepted(evidence.tpm.pcr11, "tdx_pcr11")
}

launch_recognized if {
	platform == "sgx"
	accepted(evidence.body.mr_enclave, "mr_enclave")
}

launch_recognized if {
	platform in amd_snp_platforms
	accepted(evidence.measurement, "snp_launch_measurement")
}

launch_recognized if {
	platform == "az-snp-vtpm"
	accepted(evidence.tpm.pcr11, "snp_pcr11")
}

launch_recognized if {
	platform == "sample"
	accepted(evidence.launch_digest, "launch_digest")
}

executables := 3 if launch_recognized

# ------------------------------------------------------------ configuration

debuggable := evidence.td_attributes.debug if platform in intel_tdx_platforms

debuggable := evidence.debug if platform in {"sgx", "sample"}

debuggable := evidence.policy_debug_allowed if platform in amd_snp_platforms

configuration := 2 if debuggable == false

configuration := 96 if debuggable == true

# --------------------------------------------------------------- extensions

# ear.trustee.identifiers (EAR key -18): workload identifiers the init-data
# binds to the TEE, taken from the Kata agent policy's containers.
extensions := [{
	"name": "ear.trustee.identifiers",
	"key": -18,
	"value": {"validated": validated_identifiers},
}]

agent_containers := containers if {
	containers := input.init_data_claims.agent_policy_claims.containers
	is_array(containers)
} else := []

container_images := [image |
	some container in agent_containers
	image := container.OCI.Annotations["io.kubernetes.cri.image-name"]
]

container_uids := [uid |
	some container in agent_containers
	uid := container.OCI.Process.User.UID
]

images_identifier := {"container_images": container_images} if {
	count(container_images) > 0
} else := {}

uids_identifier := {"container_uids": container_uids} if {
	count(container_uids) > 0
} else := {}

validated_identifiers := object.union(images_identifier, uids_identifier)
