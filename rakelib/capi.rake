# frozen_string_literal: true

require 'fileutils'

# The C library, as C programs use it: `rake capi PREFIX=DIR` builds libpolyphony (shared, with
# the SONAME libpolyphony.so.0, and static) and installs it under DIR: lib/libpolyphony.so.0.1.0
# with its libpolyphony.so.0 and libpolyphony.so links, lib/libpolyphony.a,
# include/polyphony.h and lib/pkgconfig/polyphony.pc. Then:
#   PKG_CONFIG_PATH=DIR/lib/pkgconfig cc prog.c $(pkg-config --cflags --libs polyphony)
desc 'Build and install the C library (libpolyphony, polyphony.h, polyphony.pc) under PREFIX'
task :capi do
  prefix = File.expand_path(ENV.fetch('PREFIX', '/usr/local'))
  version = File.read('rust/capi/Cargo.toml')[/^version = "(.+?)"/, 1]
  sh 'cargo build --locked --release -p polyphony-capi'
  lib = File.join(prefix, 'lib')
  include_dir = File.join(prefix, 'include')
  pkgconfig = File.join(lib, 'pkgconfig')
  [lib, include_dir, pkgconfig].each { |dir| FileUtils.mkdir_p(dir) }
  shared = "libpolyphony.so.#{version}"
  install 'target/release/libpolyphony_capi.so', File.join(lib, shared), mode: 0o755
  ln_sf shared, File.join(lib, 'libpolyphony.so.0')
  ln_sf 'libpolyphony.so.0', File.join(lib, 'libpolyphony.so')
  install 'target/release/libpolyphony_capi.a', File.join(lib, 'libpolyphony.a'), mode: 0o644
  install 'include/polyphony.h', File.join(include_dir, 'polyphony.h'), mode: 0o644
  File.write(File.join(pkgconfig, 'polyphony.pc'), <<~PC)
    prefix=#{prefix}
    libdir=${prefix}/lib
    includedir=${prefix}/include

    Name: polyphony
    Description: Polyphony's C library: the H1P HTTP/1 parser and the io_uring event loop
    Version: #{version}
    Cflags: -I${includedir}
    Libs: -L${libdir} -lpolyphony
    Libs.private: -lpthread -ldl -lm
  PC
  puts "installed libpolyphony #{version} under #{prefix} (pkg-config: #{pkgconfig})"
end
