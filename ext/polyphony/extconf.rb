# frozen_string_literal: true

# Builds the Rust extension with cargo (the rb_sys gem is not available here) and writes a
# Makefile whose `install` puts the library where lib/polyphony.rb looks for it. Same shape
# as rb-sys's examples, so switching to `rb_sys/mkmf` later is a change to this file only.
require 'mkmf'
require 'rbconfig'

root = File.expand_path('../..', __dir__)
dlext = RbConfig::CONFIG['DLEXT']
target = "polyphony_ext.#{dlext}"
profile = ENV.fetch('POLYPHONY_CARGO_PROFILE', 'release')
built = File.join(root, 'target', profile, 'libpolyphony_ext.so')
install_dir = File.join(root, 'lib', 'polyphony')
cargo = ENV.fetch('CARGO', find_executable('cargo') || File.expand_path('~/.cargo/bin/cargo'))

File.write('Makefile', <<~MAKE)
  CARGO = #{cargo}
  all:
  \tcd #{root} && $(CARGO) build --locked --profile #{profile} -p polyphony-ext
  \tcp #{built} #{target}
  install: all
  \tmkdir -p $(DESTDIR)#{install_dir}
  \tcp #{target} $(DESTDIR)#{install_dir}/#{target}
  clean:
  \trm -f #{target}
MAKE
