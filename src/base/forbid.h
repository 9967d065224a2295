/* Layering, checked by the compiler. meson force-includes this header (-include) into every
 * file of a layer, with a GATHERD_FORBID_* macro for each library that layer must not touch;
 * poisoning a few identifiers that the library's main header declares makes including that
 * header, or calling into it, a compile error in that layer. See src/meson.build. */
#ifndef GATHERD_FORBID_H
#define GATHERD_FORBID_H

#ifdef GATHERD_FORBID_MICROHTTPD
#pragma GCC poison MHD_start_daemon MHD_queue_response MHD_Connection
#endif
#ifdef GATHERD_FORBID_CURL
#pragma GCC poison curl_easy_init curl_multi_init curl_global_init
#endif
#ifdef GATHERD_FORBID_LIBEVENT
#pragma GCC poison event_base_new event_new evtimer_new event_base_dispatch
#endif
#ifdef GATHERD_FORBID_OPENSSL
#pragma GCC poison SSL_CTX_new X509_STORE_new PEM_read_bio_X509
#endif
#ifdef GATHERD_FORBID_JANSSON
#pragma GCC poison json_loads json_loadb json_object_get
#endif

#endif
