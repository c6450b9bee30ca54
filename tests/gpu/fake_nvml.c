/* A stand-in for NVIDIA's libnvidia-ml.so.1 with the entry points stoke loads, for tests on machines
 * without a GPU. It reports two GPUs of 8 GiB; the compute processes of GPU i, and the GPU memory each
 * holds, are the "pid bytes" lines of the file STATE_DIR/procs-i (a test's function writes its own there).
 * Build: cc -shared -fPIC -DSTATE_DIR='"/some/dir"' -o libnvidia-ml.so.1 fake_nvml.c */
#include <stdio.h>
#include <string.h>

#ifndef STATE_DIR
#error "build with -DSTATE_DIR='\"/dir\"'"
#endif

#define GPUS 2
#define SUCCESS 0
#define INVALID_ARGUMENT 2
#define INSUFFICIENT_SIZE 7

typedef struct { unsigned long long total, free, used; } memory_t;
typedef struct { unsigned int pid; unsigned long long used; unsigned int gi, ci; } process_t;

static int devices[GPUS];
static int initialised;

int nvmlInit_v2(void) { initialised = 1; return SUCCESS; }
int nvmlShutdown(void) { initialised = 0; return SUCCESS; }

int nvmlDeviceGetCount_v2(unsigned int *count) { *count = GPUS; return SUCCESS; }

int nvmlDeviceGetHandleByIndex_v2(unsigned int index, void **device) {
    if (index >= GPUS) return INVALID_ARGUMENT;
    *device = &devices[index];
    return SUCCESS;
}

static int index_of(void *device) { return (int)((int *)device - devices); }

int nvmlDeviceGetName(void *device, char *name, unsigned int length) {
    snprintf(name, length, "Fake GPU %d", index_of(device));
    return SUCCESS;
}

int nvmlDeviceGetUUID(void *device, char *uuid, unsigned int length) {
    snprintf(uuid, length, "GPU-fake-%04d", index_of(device));
    return SUCCESS;
}

int nvmlDeviceGetMemoryInfo(void *device, memory_t *memory) {
    (void)device;
    memory->total = 8ULL << 30;
    memory->used = 0;
    memory->free = memory->total;
    return SUCCESS;
}

int nvmlDeviceGetMinorNumber(void *device, unsigned int *minor) { *minor = (unsigned int)index_of(device); return SUCCESS; }

int nvmlDeviceGetComputeRunningProcesses_v3(void *device, unsigned int *count, process_t *infos) {
    char path[4096];
    snprintf(path, sizeof path, "%s/procs-%d", STATE_DIR, index_of(device));
    FILE *f = fopen(path, "r");
    unsigned int n = 0;
    if (f) {
        unsigned int pid;
        unsigned long long used;
        while (fscanf(f, "%u %llu", &pid, &used) == 2) {
            if (n < *count) {
                infos[n].pid = pid;
                infos[n].used = used;
                infos[n].gi = infos[n].ci = 0xFFFFFFFFu;
            }
            n++;
        }
        fclose(f);
    }
    int rc = n > *count ? INSUFFICIENT_SIZE : SUCCESS;
    *count = n;
    return rc;
}
