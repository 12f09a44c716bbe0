// SPDX-License-Identifier: GPL-2.0

//! `/dev/eduN`: the file operations (open, read/write by DMA, the ioctls of `uapi.rs`).
//! Every open file holds an `Arc<Edu>`; after unbind its calls fail `ENODEV` (see `dev.rs`).

use crate::{
    dev::Edu,
    misc::EduMisc,
    uapi::{
        self,
        Dir, //
    },
};
use kernel::{
    fs::{
        File,
        Kiocb, //
    },
    iov::{
        IovIterDest,
        IovIterSource, //
    },
    kvec,
    miscdevice::{
        MiscDevice,
        MiscDeviceRegistration, //
    },
    prelude::*,
    sync::{
        Arc,
        ArcBorrow, //
    },
    uaccess::{
        UserPtr,
        UserSlice, //
    },
};

/// The file operations of every `/dev/eduN` (the open file's data is the device's `Arc<Edu>`).
pub(crate) struct EduFile;

#[vtable]
impl MiscDevice for EduFile {
    type Ptr = Arc<Edu>;

    fn open(_file: &File, misc: &MiscDeviceRegistration<Self>) -> Result<Arc<Edu>> {
        let edu = EduMisc::of(misc).edu().clone();
        // Between unbind and the removal of the node an open can still get here.
        if edu.is_gone() {
            return Err(ENODEV);
        }
        Ok(edu)
    }

    fn read_iter(mut kiocb: Kiocb<'_, Arc<Edu>>, iov: &mut IovIterDest<'_>) -> Result<usize> {
        let edu = kiocb.file();
        let Some((off, len)) = uapi::span(kiocb.ki_pos(), iov.len(), Dir::Read)? else {
            return Ok(0);
        };
        // The user copy happens outside the device lock, from a bounce buffer.
        let mut bounce = kvec![0u8; len]?;
        edu.dma_read(off, &mut bounce)?;
        if iov.copy_to_iter(&bounce) != len {
            return Err(EFAULT);
        }
        *kiocb.ki_pos_mut() += len as i64;
        Ok(len)
    }

    fn write_iter(mut kiocb: Kiocb<'_, Arc<Edu>>, iov: &mut IovIterSource<'_>) -> Result<usize> {
        let edu = kiocb.file();
        let Some((off, len)) = uapi::span(kiocb.ki_pos(), iov.len(), Dir::Write)? else {
            return Ok(0);
        };
        let mut bounce = kvec![0u8; len]?;
        if iov.copy_from_iter(&mut bounce) != len {
            return Err(EFAULT);
        }
        edu.dma_write(off, &bounce)?;
        *kiocb.ki_pos_mut() += len as i64;
        Ok(len)
    }

    fn ioctl(edu: ArcBorrow<'_, Edu>, _file: &File, cmd: u32, arg: usize) -> Result<isize> {
        let user = |len| UserSlice::new(UserPtr::from_addr(arg), len);
        match cmd {
            uapi::FACTORIAL => {
                let (mut rd, mut wr) = user(size_of::<uapi::Factorial>()).reader_writer();
                let mut req: uapi::Factorial = rd.read()?;
                if req.flags != 0 {
                    return Err(EINVAL);
                }
                let timeout = uapi::timeout_ms(req.timeout_ms)?;
                req.result = edu.factorial(req.n, timeout)?;
                wr.write(&req)?;
            }
            uapi::LIVENESS => {
                let (mut rd, mut wr) = user(size_of::<u32>()).reader_writer();
                let value: u32 = rd.read()?;
                wr.write(&edu.liveness(value)?)?;
            }
            uapi::GET_STATS => {
                user(size_of::<uapi::Stats>())
                    .writer()
                    .write(&edu.stats())?;
            }
            _ => return Err(ENOTTY),
        }
        Ok(0)
    }
}
