/* Test-environment stand-in for Windows' bcryptprimitives.dll under Wine 8, which lacks it.
 * Rust's standard library asks it for ProcessPrng (random bytes); real Windows 10+ ships the
 * DLL. This one forwards to RtlGenRandom (advapi32's SystemFunction036). Never shipped. */
#include <windows.h>

BOOLEAN WINAPI SystemFunction036(PVOID buffer, ULONG length);

BOOL WINAPI ProcessPrng(PBYTE data, SIZE_T len)
{
    while (len > 0) {
        ULONG chunk = len > 0x10000000 ? 0x10000000 : (ULONG)len;
        if (!SystemFunction036(data, chunk))
            return FALSE;
        data += chunk;
        len -= chunk;
    }
    return TRUE;
}
