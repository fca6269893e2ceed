#ifndef SB_REFCOUNT_H
#define SB_REFCOUNT_H

#include <stdint.h>

// The Swift runtime's counted retain and release (exported C entry points of libswiftCore, what
// the compiler itself emits for several references to one object at once), for a fan-out that
// takes the references of all its subscribers' send queues in one atomic add
// (SwitchboardIO/SharedFrame.swift). Declared inside the functions, not at file scope, so that
// Swift never sees the runtime's names (it reserves them: @_silgen_name on them warns, and is to
// become an error). `object` is a Swift class instance's address (Unmanaged.toOpaque()).

static inline void sb_swift_retain_n(void *object, uint32_t count) {
    extern void *swift_retain_n(void *object, uint32_t count);
    swift_retain_n(object, count);
}

static inline void sb_swift_release_n(void *object, uint32_t count) {
    extern void swift_release_n(void *object, uint32_t count);
    swift_release_n(object, count);
}

#endif
