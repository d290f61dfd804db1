// RELAIS_ASAN is 1 when this translation unit is built with AddressSanitizer,
// by gcc (__SANITIZE_ADDRESS__) or clang (__has_feature), else 0. Tests use
// it to skip what ASan's shadow memory makes meaningless (address-space
// limits, RSS bounds).
#ifndef RELAIS_BASE_SANITIZER_H_
#define RELAIS_BASE_SANITIZER_H_

#if defined(__SANITIZE_ADDRESS__)
#define RELAIS_ASAN 1
#elif defined(__has_feature)
#if __has_feature(address_sanitizer)
#define RELAIS_ASAN 1
#endif
#endif
#ifndef RELAIS_ASAN
#define RELAIS_ASAN 0
#endif

#endif  // RELAIS_BASE_SANITIZER_H_
