"""File trees of real edge devices, for the device-detection tests: what each platform shows in /proc, /sys,
/etc and /dev, with the expected detection. ``source`` says where the contents come from: a dump of a real
device, or the kernel's own format (drivers named) where no public dump of that file exists.
"""

from __future__ import annotations

from dataclasses import dataclass, field
from pathlib import Path


@dataclass
class DeviceTree:
    name: str
    source: str
    files: dict[str, str]
    nodes: tuple[str, ...] = ()
    """Device nodes (/dev/...) and sysfs directories whose content the detection does not read."""
    machine: str = "aarch64"
    """What platform.machine() says there."""
    expected: dict[str, float] = field(default_factory=dict)
    identity: dict[str, object] = field(default_factory=dict)

    def write(self, root: Path) -> Path:
        for relative, text in self.files.items():
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            path.write_text(text)
        for relative in self.nodes:
            path = root / relative
            path.parent.mkdir(parents=True, exist_ok=True)
            if relative.endswith("/"):
                path.mkdir(exist_ok=True)
            else:
                path.touch()
        return root


# The Features line of Armv8.2 cores (Cortex-A55/A76/A78) on recent kernels: fp16 (asimdhp) and dot product.
ARMV82_FEATURES = (
    "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm lrcpc dcpop asimddp"
)


def _cpuinfo_arm64(features: str, part: str, cores: int, tail: str = "") -> str:
    core = (
        "processor\t: {n}\nBogoMIPS\t: 108.00\nFeatures\t: {features}\nCPU implementer\t: 0x41\n"
        "CPU architecture: 8\nCPU variant\t: 0x0\nCPU part\t: {part}\nCPU revision\t: 3\n\n"
    )
    return "".join(core.format(n=n, features=features, part=part) for n in range(cores)) + tail


# Samsung Galaxy S9 (US, SM-G960U: Snapdragon 845), Android 8. /proc/cpuinfo (64-bit kernel view, first
# core and the Hardware line) and /sys/devices/soc0/* verbatim from pytorch/cpuinfo
# test/mock/galaxy-s9-us.h, a dump of the real phone; the FastRPC node /dev/adsprpc-smd is the one Android
# vendor kernels create for the DSPs.
GALAXY_S9_CPUINFO = (
    "Processor\t: AArch64 Processor rev 12 (aarch64)\n"
    "processor\t: 0\n"
    "BogoMIPS\t: 38.40\n"
    "Features\t: fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp\n"
    "CPU implementer\t: 0x51\n"
    "CPU architecture: 8\n"
    "CPU variant\t: 0x7\n"
    "CPU part\t: 0x803\n"
    "CPU revision\t: 12\n"
    "\n"
    "Hardware\t: Qualcomm Technologies, Inc SDM845\n"
)
GALAXY_S9 = DeviceTree(
    name="galaxy-s9-sdm845-android",
    source="pytorch/cpuinfo test/mock/galaxy-s9-us.h (dump of a Galaxy S9 US)",
    files={
        "proc/cpuinfo": GALAXY_S9_CPUINFO,
        "sys/devices/soc0/family": "Snapdragon\n",
        "sys/devices/soc0/machine": "SDM845\n",
        "sys/devices/soc0/soc_id": "321\n",
        "sys/devices/soc0/vendor": "Qualcomm\n",
        "sys/devices/soc0/revision": "2.1\n",
        "sys/devices/soc0/chip_name": "SDM845\n",
        "sys/class/kgsl/kgsl-3d0/gpu_model": "Adreno630v2\n",
    },
    nodes=("dev/adsprpc-smd", "dev/kgsl-3d0"),
    expected={
        "has_npu": 1.0,
        "npu_hexagon": 1.0,
        "hexagon_arch": 65.0,
        "qcom_soc_id": 321.0,
        "has_fp16": 1.0,
        "has_int8_dot": 0.0,
        "has_gpu": 1.0,
        "has_nvidia_gpu": 0.0,
        "is_arm64": 1.0,
    },
    identity={"soc_vendor": "qualcomm", "soc_family": "Snapdragon", "soc_machine": "SDM845", "soc_id": "321"},
)

# The same phone seen by a 32-bit process (pytorch/cpuinfo's CPUINFO_ARCH_ARM view of the dump): the Arm32
# word "half" is half-word load/store, not half-precision arithmetic, so no fp16.
GALAXY_S9_ARM32_CPUINFO = (
    "Processor\t: AArch64 Processor rev 13 (aarch64)\n"
    "processor\t: 0\n"
    "model name\t: ARMv8 Processor rev 12 (v8l)\n"
    "BogoMIPS\t: 38.40\n"
    "Features\t: half thumb fastmult vfp edsp neon vfpv3 tls vfpv4 idiva idivt lpae evtstrm aes pmull sha1 "
    "sha2 crc32\n"
    "CPU implementer\t: 0x51\n"
    "CPU architecture: 8\n"
    "CPU variant\t: 0x7\n"
    "CPU part\t: 0x803\n"
    "CPU revision\t: 12\n"
    "\n"
    "Hardware\t: Qualcomm Technologies, Inc SDM845\n"
)

# Qualcomm RB3 Gen 2 (QCS6490) on an upstream kernel (Qualcomm Linux). No public dump of these files: the
# values are what the kernel writes, drivers/soc/qcom/socinfo.c (family "Snapdragon", machine the SoC's name,
# soc_id its number, 498 = QCOM_ID_QCS6490 in include/dt-bindings/arm/qcom,ids.h) and drivers/misc/fastrpc.c
# (one misc device "fastrpc-<domain>" and "fastrpc-<domain>-secure" per DSP).
RB3_GEN2 = DeviceTree(
    name="rb3gen2-qcs6490-linux",
    source="kernel formats: drivers/soc/qcom/socinfo.c, drivers/misc/fastrpc.c, dt-bindings qcom,ids.h",
    files={
        "sys/devices/soc0/family": "Snapdragon\n",
        "sys/devices/soc0/machine": "QCS6490\n",
        "sys/devices/soc0/soc_id": "498\n",
        "sys/devices/soc0/revision": "1.0\n",
        "proc/cpuinfo": _cpuinfo_arm64(
            ARMV82_FEATURES,
            "0xd05",
            2,
        ),
    },
    nodes=("dev/fastrpc-adsp", "dev/fastrpc-cdsp", "dev/fastrpc-cdsp-secure", "dev/dri/renderD128"),
    expected={
        "has_npu": 1.0,
        "npu_hexagon": 1.0,
        "hexagon_arch": 68.0,
        "qcom_soc_id": 498.0,
        "has_fp16": 1.0,
        "has_int8_dot": 1.0,
        "has_gpu": 1.0,
    },
    identity={"soc_vendor": "qualcomm", "soc_machine": "QCS6490", "npu_kinds": ["hexagon"]},
)

# NVIDIA Jetson Xavier NX, JetPack 5.1.2. /etc/nv_tegra_release: its first line as printed by `cat` on a real
# Jetson (quoted in public setup notes); /dev/nvhost-* are the GPU nodes of L4T <= R35; the model string is
# the device tree's (NUL-terminated); Carmel cores report fphp/asimdhp.
JETSON_XAVIER_NX = DeviceTree(
    name="jetson-xavier-nx-jp5",
    source="/etc/nv_tegra_release line from a real Jetson (cat output in public notes); L4T device nodes",
    files={
        "etc/nv_tegra_release": "# R35 (release), REVISION: 4.1, GCID: 33958178, BOARD: t186ref, "
        "EABI: aarch64, DATE: Tue Aug  1 19:57:35 UTC 2023\n",
        "proc/device-tree/model": "NVIDIA Jetson Xavier NX Developer Kit\0",
        "proc/device-tree/compatible": "nvidia,p3509-0000+p3668-0001\0nvidia,tegra194\0",
        "proc/cpuinfo": _cpuinfo_arm64(
            "fp asimd evtstrm aes pmull sha1 sha2 crc32 atomics fphp asimdhp cpuid asimdrdm dcpop", "0x004", 6
        ),
    },
    nodes=("dev/nvhost-gpu", "dev/nvhost-ctrl-gpu", "dev/nvmap"),
    expected={
        "is_jetson": 1.0,
        "jetson_l4t_major": 35.0,
        "has_nvidia_gpu": 1.0,
        "has_gpu": 1.0,
        "has_fp16": 1.0,
        "has_npu": 0.0,
        "has_accelerator": 1.0,
    },
    identity={
        "soc_vendor": "nvidia",
        "jetson_l4t": "R35.4.1",
        "board_model": "NVIDIA Jetson Xavier NX Developer Kit",
    },
)

# Raspberry Pi 4 Model B on 64-bit Raspberry Pi OS: the model string as `cat /proc/device-tree/model`
# printed it on a real board (quoted in a public README; the file itself ends in NUL), /proc/cpuinfo in the
# Cortex-A72's format (Armv8.0: no fp16, no dot product), ending with the firmware's Revision/Serial/Model.
RASPBERRY_PI_4 = DeviceTree(
    name="raspberry-pi-4",
    source="device-tree model from a real Pi 4 (cat output in a public README); Cortex-A72 /proc/cpuinfo",
    files={
        "proc/device-tree/model": "Raspberry Pi 4 Model B Rev 1.1\0",
        "proc/device-tree/compatible": "raspberrypi,4-model-b\0brcm,bcm2711\0",
        "proc/cpuinfo": _cpuinfo_arm64(
            "fp asimd evtstrm crc32 cpuid",
            "0xd08",
            4,
            "Revision\t: c03111\nSerial\t\t: 10000000a3b4c5d6\nModel\t\t: Raspberry Pi 4 Model B Rev 1.1\n",
        ),
    },
    nodes=("dev/dri/renderD128",),
    expected={
        "is_raspberry_pi": 1.0,
        "raspberry_pi_generation": 4.0,
        "has_fp16": 0.0,
        "has_int8_dot": 0.0,
        "has_npu": 0.0,
        "npu_coral": 0.0,
    },
    identity={"board_model": "Raspberry Pi 4 Model B Rev 1.1", "npu_kinds": []},
)

# Raspberry Pi 5 with the Raspberry Pi AI Kit (a Hailo-8L on the M.2 HAT+): Cortex-A76 (Armv8.2: fp16, dot
# product); the hailo_pci driver's /dev/hailo0.
RASPBERRY_PI_5_AI_KIT = DeviceTree(
    name="raspberry-pi-5-hailo",
    source="Pi 5 device-tree model and Cortex-A76 /proc/cpuinfo; /dev/hailo0 of the hailo_pci driver",
    files={
        "proc/device-tree/model": "Raspberry Pi 5 Model B Rev 1.0\0",
        "proc/cpuinfo": _cpuinfo_arm64(
            ARMV82_FEATURES,
            "0xd0b",
            4,
            "Revision\t: d04170\nSerial\t\t: 5c8e1f2a3b4d6e7f\nModel\t\t: Raspberry Pi 5 Model B Rev 1.0\n",
        ),
    },
    nodes=("dev/hailo0",),
    expected={
        "is_raspberry_pi": 1.0,
        "raspberry_pi_generation": 5.0,
        "has_fp16": 1.0,
        "has_int8_dot": 1.0,
        "has_npu": 1.0,
        "npu_hailo": 1.0,
        "npu_hexagon": 0.0,
    },
    identity={"npu_kinds": ["hailo"]},
)

# A Raspberry Pi 4 with a Coral USB Accelerator plugged in, before its firmware is loaded: the USB ids are
# Global Unichip's 1a6e:089a (after loading, Google's 18d1:9302), as lsusb and sysfs show them.
RASPBERRY_PI_4_CORAL_USB = DeviceTree(
    name="raspberry-pi-4-coral-usb",
    source="Coral USB Accelerator ids 1a6e:089a (Coral docs, lsusb); sysfs usb device attributes",
    files={
        **RASPBERRY_PI_4.files,
        "sys/bus/usb/devices/2-1/idVendor": "1a6e\n",
        "sys/bus/usb/devices/2-1/idProduct": "089a\n",
        "sys/bus/usb/devices/usb1/idVendor": "1d6b\n",
        "sys/bus/usb/devices/usb1/idProduct": "0002\n",
    },
    expected={"has_npu": 1.0, "npu_coral": 1.0, "has_coral_tpu": 1.0, "has_accelerator": 1.0},
    identity={"npu_kinds": ["coral"]},
)

# A Coral M.2/PCIe Accelerator: the gasket/apex driver's /dev/apex_0.
CORAL_PCIE = DeviceTree(
    name="coral-pcie",
    machine="x86_64",
    source="/dev/apex_0 of the gasket/apex driver (Coral M.2 and PCIe accelerators)",
    files={},
    nodes=("dev/apex_0",),
    expected={"has_npu": 1.0, "npu_coral": 1.0, "has_coral_tpu": 1.0},
)

# Radxa ROCK 5B (RK3588) on Rockchip's vendor kernel (5.10, rknpu driver): the SoC comes from the device
# tree's compatible list, the NPU from its devfreq node named after its address in rk3588s.dtsi
# (npu@fdab0000).
ROCK_5B = DeviceTree(
    name="rock-5b-rk3588",
    source="rk3588s.dtsi (npu@fdab0000, compatible rockchip,rk3588); Cortex-A76/A55 /proc/cpuinfo",
    files={
        "proc/device-tree/model": "Radxa ROCK 5B\0",
        "proc/device-tree/compatible": "radxa,rock-5b\0rockchip,rk3588\0",
        "proc/cpuinfo": _cpuinfo_arm64(
            ARMV82_FEATURES,
            "0xd05",
            8,
        ),
    },
    nodes=("sys/class/devfreq/fdab0000.npu/", "dev/dri/renderD128", "dev/mali0"),
    expected={"has_npu": 1.0, "npu_rockchip": 1.0, "has_fp16": 1.0, "has_gpu": 1.0, "is_raspberry_pi": 0.0},
    identity={"soc_vendor": "rockchip", "soc_machine": "rk3588", "npu_kinds": ["rockchip"]},
)

# A Meteor Lake laptop (Core Ultra): the NPU is /dev/accel/accel0, its PCI device's uevent as the kernel
# writes it (drivers/pci/pci-driver.c pci_uevent plus the driver core's DRIVER=; 8086:7d1d is the Meteor Lake
# NPU, PCI_DEVICE_ID_MTL in drivers/accel/ivpu). x86 flags: AVX-VNNI, no AVX512-FP16.
METEOR_LAKE = DeviceTree(
    name="meteor-lake-intel-npu",
    machine="x86_64",
    source="kernel formats: pci_uevent + DRIVER=intel_vpu (drivers/accel/ivpu, PCI id 8086:7D1D)",
    files={
        "sys/class/accel/accel0/device/uevent": "DRIVER=intel_vpu\nPCI_CLASS=120000\nPCI_ID=8086:7D1D\n"
        "PCI_SUBSYS_ID=1028:0C3E\nPCI_SLOT_NAME=0000:00:0b.0\n"
        "MODALIAS=pci:v00008086d00007D1Dsv00001028sd00000C3Ebc12sc00i00\n",
        "proc/cpuinfo": "processor\t: 0\nvendor_id\t: GenuineIntel\ncpu family\t: 6\nmodel\t\t: 170\n"
        "model name\t: Intel(R) Core(TM) Ultra 7 155H\ncpu MHz\t\t: 400.000\n"
        "flags\t\t: fpu vme de pse tsc msr pae mce cx8 apic sep mtrr sse sse2 ssse3 fma cx16 sse4_1 sse4_2 "
        "movbe popcnt aes xsave avx f16c rdrand avx2 bmi1 bmi2 sha_ni avx_vnni\n\n",
    },
    nodes=("dev/accel/accel0", "dev/dri/renderD128"),
    expected={"has_npu": 1.0, "npu_intel": 1.0, "has_fp16": 0.0, "has_int8_dot": 1.0, "is_x86_64": 1.0},
    identity={"npu_kinds": ["intel"]},
)

# An AMD Ryzen AI laptop: /dev/accel/accel0 bound to amdxdna (drivers/accel/amdxdna).
RYZEN_AI = DeviceTree(
    name="ryzen-ai-xdna",
    machine="x86_64",
    source="kernel formats: pci_uevent + DRIVER=amdxdna (drivers/accel/amdxdna, PCI id 1022:1502)",
    files={
        "sys/class/accel/accel0/device/uevent": "DRIVER=amdxdna\nPCI_CLASS=118000\nPCI_ID=1022:1502\n"
        "PCI_SUBSYS_ID=17AA:3803\nPCI_SLOT_NAME=0000:c4:00.1\n"
        "MODALIAS=pci:v00001022d00001502sv000017AAsd00003803bc11sc80i00\n",
    },
    nodes=("dev/accel/accel0",),
    expected={"has_npu": 1.0, "npu_amd": 1.0, "npu_intel": 0.0},
    identity={"npu_kinds": ["amd"]},
)

# A laptop or server without any of these: nothing is claimed.
PLAIN_X86 = DeviceTree(
    name="plain-x86",
    machine="x86_64",
    source="x86 /proc/cpuinfo flags without fp16 or VNNI",
    files={
        "proc/cpuinfo": "processor\t: 0\ncpu MHz\t\t: 2400.000\nflags\t\t: fpu sse sse2 avx avx2 fma f16c\n\n"
    },
    expected={"has_npu": 0.0, "has_fp16": 0.0, "has_int8_dot": 0.0, "is_jetson": 0.0, "has_accelerator": 0.0},
    identity={"soc_vendor": None, "board_model": None, "npu_kinds": []},
)

ALL = (
    GALAXY_S9,
    RB3_GEN2,
    JETSON_XAVIER_NX,
    RASPBERRY_PI_4,
    RASPBERRY_PI_5_AI_KIT,
    RASPBERRY_PI_4_CORAL_USB,
    CORAL_PCIE,
    ROCK_5B,
    METEOR_LAKE,
    RYZEN_AI,
    PLAIN_X86,
)
