# veritee default attestation policy for GPU-class evidence (policy id "default_gpu").
#
# input: one device's claims: input.nvidia (an NVIDIA GPU appraised by NRAS,
# x-nvidia-* claims) or input.sampledevice (Trustee's sample device, tests only).
# output: trust_claims, an AR4SI trustworthiness vector.
package policy

import rego.v1

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

accepted(value, name) if {
	value != null
	value in query_reference_value(name)
}

accepted(value, name) if {
	value != null
	value == query_reference_value(name)
}

# ------------------------------------------------------------ sample device

hardware := 2 if accepted(input.sampledevice.svn, "device_svn")

# ----------------------------------------------------------- NVIDIA via NRAS

gpu := input.nvidia

certificate_chain_good(name) if {
	gpu[name]["x-nvidia-cert-status"] == "valid"
	gpu[name]["x-nvidia-cert-ocsp-status"] == "good"
}

report_checks := [
	"x-nvidia-gpu-attestation-report-cert-chain-fwid-match",
	"x-nvidia-gpu-attestation-report-parsed",
	"x-nvidia-gpu-attestation-report-signature-verified",
	"x-nvidia-gpu-arch-check",
]

hardware := 2 if {
	certificate_chain_good("x-nvidia-gpu-attestation-report-cert-chain")
	every check in report_checks {
		gpu[check] == true
	}
}

rim_checks := [
	"x-nvidia-gpu-driver-rim-fetched",
	"x-nvidia-gpu-driver-rim-schema-validated",
	"x-nvidia-gpu-driver-rim-signature-verified",
	"x-nvidia-gpu-driver-rim-version-match",
	"x-nvidia-gpu-driver-rim-measurements-available",
	"x-nvidia-gpu-vbios-rim-fetched",
	"x-nvidia-gpu-vbios-rim-schema-validated",
	"x-nvidia-gpu-vbios-rim-signature-verified",
	"x-nvidia-gpu-vbios-rim-version-match",
	"x-nvidia-gpu-vbios-rim-measurements-available",
]

executables := 3 if {
	certificate_chain_good("x-nvidia-gpu-vbios-rim-cert-chain")
	every check in rim_checks {
		gpu[check] == true
	}
	gpu.measres == "success"
}

# A GPU whose runtime measurements differ from its RIMs' golden values runs firmware or a
# driver nobody vouched for: contraindicated (AR4SI executables 96), beyond Trustee's policy,
# which leaves such a GPU at the warning default.
executables := 96 if gpu.measres == "fail"

production_mode if {
	gpu.secboot == true
	gpu.dbgstat == "disabled"
}

configuration := 2 if {
	production_mode
	accepted(gpu["x-nvidia-gpu-vbios-version"], "allowed_vbios_versions")
	accepted(gpu["x-nvidia-gpu-driver-version"], "allowed_driver_versions")
} else := 3 if {
	production_mode
}

configuration := 96 if gpu.dbgstat == "enabled"
